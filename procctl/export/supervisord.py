"""supervisord: one APP.conf for its include directory (conf.d), with a
[program:x] per process and a [group:APP] around them.

Identical replicas are one program with numprocs; replicas that differ (a
PORT, an {index} in the command) are one program each. Dependency order
becomes `priority` (supervisord starts lower numbers first, stops them last,
and never waits for one before starting the next).

supervisord has no rlimits or nice of its own: the command runs under
`nice -n N` and `prlimit --RESOURCE=soft:hard`, which exec it in place.

Quoting, as supervisord reads it: the file is an ini whose values lose text
after a blank followed by `;` or `#`; every value is %-expanded (`%%` is a
`%`); `command` is then split with shlex (POSIX rules), `environment` with
shlex in its non-POSIX mode (no escapes, and quotes at either end of a value
are stripped). A value those rules cannot carry is refused.
"""

from __future__ import annotations

import math
import re
import signal
import string

from procctl.config.command import argv_of
from procctl.config.plan import Job
from procctl.export.model import ENV_NAME, Export, Service, identical_replicas

_SAFE = frozenset(string.ascii_letters + string.digits + "_-./=:,@+")
_PRLIMIT = (
    ("address_space", "as"), ("core", "core"), ("cpu_time", "cpu"),
    ("fsize", "fsize"), ("nofile", "nofile"), ("nproc", "nproc"),
)  # fmt: skip
_COMMENT = re.compile(r"\s[;#]")


def file_name(export: Export) -> str:
    return f"{export.options.app}.conf"


def render(export: Export) -> dict[str, str]:
    sections: list[str] = []
    programs: list[str] = []
    for service in export.services:
        if identical_replicas(service):
            sections.append(_program(export, service, service.jobs[0], service.name, numprocs=service.spec.replicas))
            programs.append(service.name)
        else:
            for job in service.jobs:
                sections.append(_program(export, service, job, job.name, numprocs=0))
                programs.append(job.name)
    group = f"[group:{export.options.app}]\nprograms={','.join(programs)}\n"
    return {file_name(export): export.header("supervisord") + "\n".join([group, *sections])}


def command_word(word: str) -> str:
    """One argument, written so that %-expansion and then shlex.split give it
    back: in single quotes when that is safe; else safe characters as they
    are, blanks in single quotes, anything else escaped with a backslash (so
    no blank ever precedes a `;` or `#`)."""
    if not word:
        return "''"
    if all(char in _SAFE for char in word):
        return word
    if "'" not in word and not _COMMENT.search(word):
        return "'" + word.replace("%", "%%") + "'"
    out = []
    for char in word:
        if char in _SAFE:
            out.append(char)
        elif char == "%":
            out.append("%%")
        elif char.isspace():
            out.append(f"'{char}'")
        else:
            out.append("\\" + char)
    return "".join(out)


def _check_line(export: Export, service: Service, key: str, text: str, what: str) -> None:
    if any(char in text for char in "\n\r\0"):
        raise export.cannot(service, key, "supervisord", f"{what} has a line break or NUL, which its ini file cannot hold")


def env_value(export: Export, service: Service, key: str, value: str) -> str:
    _check_line(export, service, "env", value, f"the value of {key}")
    if _COMMENT.search(value):
        raise export.cannot(service, "env", "supervisord", f"the value of {key} has a blank before ';' or '#', which its ini reader cuts off")
    if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
        raise export.cannot(service, "env", "supervisord", f"the value of {key} starts or ends with a quote, which supervisord strips")
    quote = '"' if '"' not in value else "'"
    if quote in value:
        raise export.cannot(service, "env", "supervisord", f"the value of {key} holds both kinds of quote")
    return quote + value.replace("%", "%%") + quote


def _program(export: Export, service: Service, job: Job, name: str, *, numprocs: int) -> str:
    spec = service.spec
    notes: list[str] = []
    argv = list(argv_of(job.cmd))
    for word in argv:
        _check_line(export, service, "cmd", word, "the command")
    wrapper: list[str] = []
    if spec.nice is not None:
        wrapper += ["nice", "-n", str(spec.nice)]
    limits = [f"--{option}={pair[0]}:{pair[1]}" for field, option in _PRLIMIT if (pair := getattr(spec.limits, field)) is not None]
    if limits:
        wrapper += ["prlimit", *limits, "--"]
    lines = [f"[program:{name}]", "command=" + " ".join(command_word(word) for word in [*wrapper, *argv])]
    cwd = str(job.cwd)
    _check_line(export, service, "cwd", cwd, "the path")
    if _COMMENT.search(cwd) or cwd != cwd.strip():
        raise export.cannot(service, "cwd", "supervisord", f"the path {cwd!r} has blanks its ini reader cuts off")
    lines.append("directory=" + cwd.replace("%", "%%"))
    if export.options.user:
        lines.append(f"user={export.options.user}")
    pairs = []
    for key, value in job.env.items():
        if not ENV_NAME.match(key):
            raise export.cannot(service, "env", "supervisord", f"{key!r} is not a variable name it accepts (letters, digits, '_')")
        if numprocs and key == "PROCCTL_INSTANCE":
            pairs.append(f'{key}="%(program_name)s.%(process_num)d"')
        else:
            pairs.append(f"{key}={env_value(export, service, key, value)}")
    if pairs:
        lines.append("environment=" + ",".join(pairs))
    lines.append("autostart=true")
    lines.append("autorestart=" + {"no": "false", "on-failure": "unexpected", "always": "true"}[spec.restart])
    lines.append("exitcodes=0")
    if spec.restart == "no":
        # A job may end at once, and that is no failed start.
        lines.append("startsecs=0")
    else:
        # Both count the failed starts in a row: a run shorter than min_uptime (startsecs).
        lines.append(f"startsecs={max(math.ceil(spec.min_uptime_s), 1)}")
        lines.append(f"startretries={spec.max_restarts}")
        notes.append("backoff: supervisord waits 1s more after each failed start")
    lines.append(f"stopsignal={signal.Signals(spec.stop_signal).name.removeprefix('SIG')}")
    lines.append(f"stopwaitsecs={max(math.ceil(export.stop_timeout_s(service)), 1)}")
    lines.append("stopasgroup=true")
    lines.append("killasgroup=true")
    lines.append(f"priority={100 * (service.level + 1)}")
    if numprocs:
        lines += [f"numprocs={numprocs}", "numprocs_start=1", "process_name=%(program_name)s.%(process_num)d"]
    if service.depends_on:
        notes.append("depends_on: only start order (priority); supervisord does not wait for a dependency")
    if spec.ready is not None:
        notes.append("ready: supervisord has no readiness probes")
    if spec.limits.memory is not None or spec.limits.cpu_percent is not None:
        notes.append("limits.memory and limits.cpu_percent: supervisord has no memory or CPU limits")
    if spec.timeout_s is not None:
        notes.append("timeout: supervisord has no run time limit")
    if spec.watchdog_s is not None:
        notes.append("watchdog: supervisord has no notification socket")
    if spec.liveness is not None:
        notes.append("liveness: supervisord has no liveness probes")
    if spec.shared:
        notes.append("shared: supervisord makes no shared memory regions (PROCCTL_SHM_* are not set)")
    comments = "".join(f"# Not mapped: {note}\n" for note in notes)
    return comments + "\n".join(lines) + "\n"
