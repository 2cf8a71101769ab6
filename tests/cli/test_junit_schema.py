"""The `--junit` report against the common JUnit XSD (Jenkins' junit-10.xsd,
the schema pytest validates its own reports with): a real run's report is
valid, passing cases keep their output, and the check itself rejects what
the schema forbids."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Project

XSD = Path(__file__).resolve().parents[1] / "schemas" / "junit-10.xsd"


@pytest.fixture(scope="module")
def junit_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def _errors(schema: etree.XMLSchema, document: bytes) -> list[str]:
    schema.validate(etree.fromstring(document))
    return [error.message for error in schema.error_log]


def test_a_real_report_is_valid_counts_and_keeps_output(project: Project, junit_schema: etree.XMLSchema) -> None:
    """1. A run with passing `each` jobs, a passing job writing 150 lines, one
       writing a single 100 KiB line, a failure after 150 lines and a control
       character, a SIGKILL, and a job skipped for the failure.
    2. The report validates against junit-10.xsd; <testsuites> has no `skipped`.
    3. The counts are right; every case has a time and a classname.
    4. A failure carries its exit status or signal and the last 100 lines of
       its log, the control character replaced; a passing case has the last
       100 lines of its log in <system-out>, never more than 64 KiB."""
    project.write("""
        [settings]
        fail_fast = false
        [process.pass]
        cmd = "echo ok {item}"
        each = ["a", "b"]
        [process.talker]
        cmd = "for i in $(seq 1 150); do echo line $i; done"
        [process.wide]
        cmd = "head -c 102400 /dev/zero | tr '\\\\0' x; echo"
        [process.chatty]
        cmd = "for i in $(seq 1 150); do echo line $i; done; printf 'ctl \\\\001\\\\n'; exit 2"
        [process.crash]
        cmd = "kill -KILL $$"
        [process.later]
        cmd = "echo never"
        depends_on = { chatty = "succeeded" }
    """)
    report = project.root / "junit.xml"
    result = project.run("run", "--junit", str(report))
    assert result.returncode == 1, result.stderr
    document = report.read_bytes()
    assert _errors(junit_schema, document) == []

    root = etree.fromstring(document)
    assert root.tag == "testsuites" and root.get("skipped") is None
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "2", "0")
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("7", "2", "0", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"pass[1]", "pass[2]", "talker", "wide", "chatty", "crash", "later"}
    for case in cases.values():
        float(case.get("time") or "x")
        assert case.get("classname")
    assert cases["pass[1]"].get("classname") == "pass"

    assert cases["pass[1]"].findtext("system-out") == "ok a\n" and cases["pass[1]"].find("failure") is None
    assert cases["pass[2]"].findtext("system-out") == "ok b\n"
    talker = cases["talker"].findtext("system-out") or ""
    assert talker.startswith("line 51\n") and talker.endswith("line 150\n") and talker.count("\n") == 100
    wide = cases["wide"].findtext("system-out") or ""
    assert len(wide.encode()) == 64 << 10 and set(wide.rstrip("\n")) == {"x"}

    failure = cases["chatty"].find("failure")
    assert failure is not None and "exit code 2" in (failure.get("message") or "")
    assert cases["chatty"].find("system-out") is None
    text = failure.text or ""
    assert "line 150" in text and "line 52\n" in text and "line 51\n" not in text  # the last 100 lines
    assert "ctl \ufffd" in text  # a control character XML cannot hold, replaced
    crash = cases["crash"].find("failure")
    assert crash is not None and "SIGKILL" in (crash.get("message") or "")
    assert cases["later"].find("skipped") is not None and cases["later"].find("system-out") is None


def test_the_schema_check_rejects_broken_reports(junit_schema: etree.XMLSchema) -> None:
    """The check can fail: each report breaks one rule of the schema (a
    `skipped` count on <testsuites>, as procctl once wrote; a testcase with
    no name; a suite without its counts; an unknown element; a bad time)."""
    valid = b'<testsuites name="procctl" tests="1" failures="0" errors="0" time="0.100"><testsuite name="s" tests="1" failures="0" errors="0" skipped="0" time="0.100"><testcase name="a" classname="a" time="0.100"><system-out>ok</system-out></testcase></testsuite></testsuites>'
    assert _errors(junit_schema, valid) == []
    broken = {
        "skipped on testsuites": valid.replace(b'errors="0" time="0.100"><testsuite', b'errors="0" skipped="0" time="0.100"><testsuite'),
        "testcase without a name": valid.replace(b'<testcase name="a" ', b"<testcase "),
        "testsuite without counts": valid.replace(b' tests="1" failures="0" errors="0" skipped="0"', b""),
        "unknown element": valid.replace(b"<system-out>ok</system-out>", b"<stdout>ok</stdout>"),
        "time not in seconds": valid.replace(b'time="0.100"><testsuite', b'time="soon"><testsuite'),
    }
    for what, document in broken.items():
        assert document != valid, what
        assert _errors(junit_schema, document), what
