"""systemd: one service unit per instance and a target that groups them.

One unit per instance rather than a template `name@.service`: replicas differ
in PORT, and in their command and probe when those use {port}; systemd
specifiers cannot add a replica number to a base port, so a template would need
a drop-in per instance anyway, and `systemctl start app-web@9` would start a
replica with no port. Scaling is a new export.

Every value is quoted for systemd's own parser (systemd.syntax(7)): words in
double quotes with C escapes, `%` doubled against specifier expansion, and `$`
doubled on command lines against variable substitution.
"""

from __future__ import annotations

import os
import re
import signal

from procctl.config.command import argv_of
from procctl.config.plan import Job
from procctl.export.model import ENV_NAME, Export, Service, seconds, split_environment

_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}
_BARE = re.compile(r"^[A-Za-z0-9_./:=,+@-]+$")
_RLIMITS = (
    ("nofile", "LimitNOFILE"), ("cpu_time", "LimitCPU"), ("nproc", "LimitNPROC"),
    ("fsize", "LimitFSIZE"), ("core", "LimitCORE"), ("address_space", "LimitAS"),
)  # fmt: skip


def unit_name(export: Export, job: Job) -> str:
    return f"{export.options.app}-{job.name}.service"


def quote(word: str, *, command: bool) -> str:
    """`word` as one double-quoted systemd word. `command`: on a command line,
    where `$` must be doubled too. The caller has refused NUL. A word of
    plain characters is left bare."""
    if _BARE.match(word):
        return word
    out = ['"']
    for char in word:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif char == "%":
            out.append("%%")
        elif char == "$" and command:
            out.append("$$")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render(export: Export) -> dict[str, str]:
    """{file name: text}: a unit per instance and APP.target."""
    files: dict[str, str] = {}
    for service in export.services:
        for job in service.jobs:
            files[unit_name(export, job)] = _unit(export, service, job)
    app = export.options.app
    wants = " ".join(files)
    files[f"{app}.target"] = (
        export.header("systemd")
        + f"# Start everything: systemctl start {app}.target; at boot: systemctl enable {app}.target\n"
        + "[Unit]\n"
        + f"Description={_plain('procctl app ' + app)}\n"
        + f"Wants={wants}\n"
        + "\n[Install]\nWantedBy=multi-user.target\n"
    )
    return files


def _plain(text: str) -> str:
    """Free text (a description): specifiers escaped, one line."""
    return text.replace("%", "%%").replace("\n", " ")


def _path(export: Export, service: Service, key: str, path: str) -> str:
    """A path setting takes the rest of the line as it is: no quoting, so no
    control characters and no surrounding blanks."""
    if any(not c.isprintable() for c in path) or path != path.strip():
        raise export.cannot(service, key, "systemd", f"the path {path!r} has control characters or surrounding blanks")
    return path.replace("%", "%%")


def _argv(export: Export, service: Service, job: Job) -> list[str]:
    argv = list(argv_of(job.cmd))
    if any("\0" in word for word in argv):
        raise export.cannot(service, "cmd", "systemd", "the command holds a NUL character")
    program = argv[0]
    if "/" in program and not program.startswith("/"):
        # procctl runs it from the working directory; systemd wants it absolute.
        program = os.path.normpath(os.path.join(job.cwd, program))
    if program[:1] in ("-", "@", ":", "+", "!") or "$" in program:
        raise export.cannot(service, "cmd", "systemd", f"the program {program!r} would be read as ExecStart= prefixes or variables")
    argv[0] = program
    return argv


def _unit(export: Export, service: Service, job: Job) -> str:
    spec = service.spec
    app = export.options.app
    unit: list[str] = ["[Unit]", f"Description={_plain(f'procctl app {app}: {job.name}')}", f"PartOf={app}.target"]
    notes: list[str] = []
    for dep, condition in service.depends_on.items():
        names = " ".join(unit_name(export, other) for other in export.service(dep).jobs)
        unit += [f"After={names}", f"Requires={names}"]
        dep_ready = export.service(dep).spec.ready
        if condition == "ready" and dep_ready is not None and dep_ready.kind != "notify":
            notes.append(f"waits for {dep} to start, not to be ready: systemd learns readiness only from the service itself (sd_notify)")
    oneshot = service.awaited_success and spec.restart != "always"
    if service.awaited_success and not oneshot:
        notes.append("restarts always, so nothing can wait for it to succeed: dependents wait for its start")
    if spec.restart != "no":
        # At most max_restarts restarts (until `systemctl reset-failed`): systemd counts every start, where
        # procctl counts the restarts in a row and starts afresh after a run of min_uptime.
        unit += ["StartLimitIntervalSec=infinity", f"StartLimitBurst={spec.max_restarts + 1}"]
        notes.append("max_restarts: systemd counts every start, not the restarts in a row since a run of min_uptime")

    svc: list[str] = ["[Service]"]
    if oneshot:
        svc += ["Type=oneshot", "RemainAfterExit=yes"]
    elif spec.ready is not None and spec.ready.kind == "notify":
        # READY=1 on $NOTIFY_SOCKET, as procctl reads it: from any process of the unit.
        svc += ["Type=notify", "NotifyAccess=all", f"TimeoutStartSec={seconds(spec.ready.timeout_s)}"]
    else:
        svc.append("Type=exec")
    if spec.watchdog_s is not None:
        svc.append(f"WatchdogSec={seconds(spec.watchdog_s)}")
    if spec.liveness is not None:
        notes.append("liveness: systemd has no liveness probes (its way is WatchdogSec= with sd_notify)")
    if spec.shared:
        notes.append("shared: systemd makes no shared memory regions (PROCCTL_SHM_* are not set)")
    svc.append("ExecStart=" + " ".join(quote(word, command=True) for word in _argv(export, service, job)))
    svc.append("WorkingDirectory=" + _path(export, service, "cwd", str(job.cwd)))
    if export.options.user:
        svc.append(f"User={export.options.user}")
    environment = split_environment(export, job, files_win=True)
    for path in environment.files:
        svc.append("EnvironmentFile=" + _path(export, service, "env_file", str(path)))
    for key, value in environment.inline.items():
        if not ENV_NAME.match(key):
            raise export.cannot(service, "env", "systemd", f"{key!r} is not a variable name systemd accepts (letters, digits, '_')")
        if "\0" in value:
            raise export.cannot(service, "env", "systemd", f"the value of {key} holds a NUL character")
        svc.append("Environment=" + quote(f"{key}={value}", command=False))
    svc.append(f"Restart={spec.restart}")
    if spec.restart != "no":
        svc.append(f"RestartSec={seconds(spec.backoff_s)}")
        notes.append("restarts after a fixed RestartSec=, where procctl doubles the delay each time")
    svc.append(f"TimeoutStopSec={seconds(export.stop_timeout_s(service))}")
    svc.append("KillMode=control-group")
    svc.append(f"KillSignal={signal.Signals(spec.stop_signal).name}")
    if spec.timeout_s is not None:
        svc.append(f"{'TimeoutStartSec' if oneshot else 'RuntimeMaxSec'}={seconds(spec.timeout_s)}")
    limits = spec.limits
    if limits.memory is not None:
        svc.append(f"MemoryMax={limits.memory}")
    if limits.cpu_percent is not None:
        svc.append(f"CPUQuota={_percent(limits.cpu_percent)}%")
    for field, key in _RLIMITS:
        pair = getattr(limits, field)
        if pair is not None:
            svc.append(f"{key}={pair[0]}:{pair[1]}")
    if spec.nice is not None:
        svc.append(f"Nice={spec.nice}")
    if spec.on_limit == "restart" and spec.restart == "no" and (limits.memory is not None):
        notes.append('on_limit = "restart": the kernel kills a unit over MemoryMax=, and only Restart= brings it back')
    svc.append(f"SyslogIdentifier={job.name}")

    comments = "".join(f"# Not mapped: {note}\n" for note in notes)
    return export.header("systemd") + comments + "\n".join(unit) + "\n\n" + "\n".join(svc) + f"\n\n[Install]\nWantedBy={app}.target\n"


def _percent(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")
