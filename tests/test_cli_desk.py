"""`riskcast desk` and `riskcast report overrides` as a credit manager runs them."""

from __future__ import annotations

import json

from riskcast.cli import main


def test_users_keys_queue_and_the_override_report_from_the_command_line(workdir_copy, capsys, tmp_path):
    home = ["--workdir", str(workdir_copy)]
    assert main(["desk", "add-user", "ann", "--role", "analyst", "--name", "Ann Analyst", *home]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("rk_") and key.encode() not in (workdir_copy / "audit.sqlite").read_bytes()
    assert main(["desk", "add-user", "bob", *home]) == 2  # no role
    assert "--role" in capsys.readouterr().err
    assert main(["desk", "users", *home]) == 0
    listed = capsys.readouterr().out
    assert "ann" in listed and "analyst" in listed and key not in listed
    from riskcast.config import WorkPaths, load_config
    from riskcast.serving.runtime import open_desk

    desk = open_desk(load_config(workdir_copy / "riskcast.toml"), WorkPaths(root=workdir_copy))
    open_cases = desk.queue()
    assert main(["desk", "queue", *home]) == 0
    queue = capsys.readouterr().out.splitlines()
    summary = json.loads((workdir_copy / "scored_book.summary.json").read_text())
    # the demo's rescore referred these; orders other tests sent to the demo's service may have added more
    assert len(open_cases) >= summary["decisions"]["refer"]
    assert queue[0].startswith(f"{len(open_cases)} open case(s)") and len(queue) == len(open_cases) + 1
    assert [int(line.split()[1]) for line in queue[1:]] == [c.case_id for c in open_cases]

    # ann sets a limit on the smallest case: the report shows her override
    case = min((c for c in open_cases if c.recommended_limit and c.recommended_limit * 1.1 <= 50_000),
               key=lambda c: c.exposure)
    ann = desk.authenticate(key)
    desk.decide(case.case_id, ann, case.seq, "set_limit", reason_code="PAY", text="paid on time",
                credit_limit=round(case.recommended_limit * 1.1, 2))
    out = tmp_path / "overrides.json"
    assert main(["report", "overrides", "--data", str(workdir_copy / "book"), "--json", str(out), *home]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("desk decisions: 1, overrides 1 (100.0%): up 1, down 0")
    report = json.loads(out.read_text())
    assert report["by_analyst"] == [{"decided_by": "ann", "decisions": 1, "overrides": 1, "up": 1, "down": 0,
                                     "override_rate": 1.0}]
    assert report["outcomes"]["matured"] == 0  # decided today: its 12 months are ahead
    assert main(["desk", "revoke-key", key, *home]) == 0
    assert main(["desk", "revoke-key", key, *home]) == 2
    assert "revoked already" in capsys.readouterr().err
    assert main(["desk", "migrate", *home]) == 0
    assert "revision 0003" in capsys.readouterr().out


def test_an_id_with_a_line_break_stays_on_its_line_of_the_queue(workdir_copy, capsys):
    from riskcast.config import WorkPaths, load_config
    from riskcast.serving.desk.store import Referral
    from riskcast.serving.runtime import open_desk

    desk = open_desk(load_config(workdir_copy / "riskcast.toml"), WorkPaths(root=workdir_copy))
    desk.refer([Referral("bad\nid\x07", "odd-1", {"pd_12m": 0.99, "exposure": 1e12, "order_amount": 1.0,
                                                   "decision": "refer"})])
    n = len(desk.queue())
    assert main(["desk", "queue", "--workdir", str(workdir_copy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == n + 1 and "'bad\\nid\\x07'" in lines[1]  # the most at stake: first
