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


def test_a_real_report_is_valid_and_passing_cases_keep_their_output(project: Project, junit_schema: etree.XMLSchema) -> None:
    """1. A run with passing `each` jobs, a chatty passing job (150 lines), one
       that writes a single 100 KiB line, a failure, a SIGKILL and a skipped job.
    2. The report validates against junit-10.xsd; <testsuites> has no `skipped`.
    3. Each passing case has <system-out> with the last 100 lines of its log,
       never more than 64 KiB; failures keep the log tail in <failure>."""
    project.write("""
        [settings]
        fail_fast = false
        [process.pass]
        cmd = "echo ok {item}"
        each = ["a", "b"]
        [process.chatty]
        cmd = "for i in $(seq 1 150); do echo line $i; done"
        [process.wide]
        cmd = "head -c 102400 /dev/zero | tr '\\\\0' x; echo"
        [process.broken]
        cmd = "echo about to fail; exit 2"
        [process.crash]
        cmd = "kill -KILL $$"
        [process.later]
        cmd = "echo never"
        depends_on = { broken = "succeeded" }
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
    assert suite.get("skipped") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert cases["pass[1]"].findtext("system-out") == "ok a\n"
    assert cases["pass[2]"].findtext("system-out") == "ok b\n"
    chatty = cases["chatty"].findtext("system-out") or ""
    assert chatty.startswith("line 51\n") and chatty.endswith("line 150\n") and chatty.count("\n") == 100
    wide = cases["wide"].findtext("system-out") or ""
    assert len(wide.encode()) == 64 << 10 and set(wide.rstrip("\n")) == {"x"}
    failure = cases["broken"].find("failure")
    assert failure is not None and "about to fail" in (failure.text or "") and cases["broken"].find("system-out") is None
    assert cases["crash"].find("failure") is not None
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
