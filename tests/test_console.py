"""The terminal a command leaves (attrpipe.console): its own lines on the terminal, every library's output in the log
file, once; -v leaves everything where the libraries print it. No Ray, no model."""

import subprocess
import sys
import textwrap

from attrpipe.console import Progress, echo, format_progress, log_path, session
from attrpipe.loop import loop_table, stage_summary

SCRIPT = textwrap.dedent("""
    import os, sys, warnings
    from attrpipe.console import Progress, echo, session
    verbose = sys.argv[2] == "verbose"
    print("before the session")
    with session(sys.argv[1], verbose=verbose):
        echo("stage line")
        print("a library's print")
        print("a library's warning", file=sys.stderr)
        os.write(1, b"a C library's write\\n")
        warnings.warn("a FutureWarning wall")
        subprocess_out = __import__("subprocess").run([sys.executable, "-c", "print('a child process')"])
        with Progress("sft", lambda: (3, 4, "loss 0.5"), unit="steps"):
            pass
    print("after the session")
""")


def _run(tmp_path, mode: str):
    log = tmp_path / "out" / "attrpipe-x.log"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True, check=True,
                       cwd=tmp_path)
    return r, log


def test_a_quiet_session_sends_everything_but_its_own_lines_to_the_log(tmp_path):
    r, log = _run(tmp_path, "quiet")
    out = r.stdout.splitlines()
    assert out[0] == "before the session" and out[-1] == "after the session"
    assert out[1] == "stage line"
    assert out[2].startswith("sft") and "3/4 steps" in out[2] and "75%" in out[2] and "loss 0.5" in out[2]
    assert len(out) == 4, out  # nothing else reached the terminal
    assert r.stderr == ""
    text = log.read_text()
    for line in ("a library's print", "a library's warning", "a C library's write", "a FutureWarning wall",
                 "a child process", "stage line"):
        assert text.count(line) == 1, (line, text)  # once each, the stage line too (the log is the full record)
    assert "before the session" not in text and "after the session" not in text


def test_verbose_leaves_the_output_where_the_libraries_print_it(tmp_path):
    r, log = _run(tmp_path, "verbose")
    assert "a library's print" in r.stdout and "a C library's write" in r.stdout and "stage line" in r.stdout
    assert "a library's warning" in r.stderr and "a FutureWarning wall" in r.stderr
    assert not log.exists()


def test_outside_a_session_echo_and_the_final_progress_line_are_prints(capsys):
    echo("hello")
    with Progress("evaluate", lambda: (12, 12, "54 chains"), unit="listings"):
        pass
    with Progress("broken", lambda: 1 / 0):  # a progress read that fails says nothing, and fails nothing
        pass
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "hello" and out[1].startswith("evaluate") and "12/12 listings" in out[1] and len(out) == 2


def test_format_progress():
    line = format_progress("pseudolabel", 30, 120, 60.0, "listings", "210 chains")
    assert "30/120 listings" in line and "25%" in line and "210 chains" in line
    assert "1m00s" in line and "ETA 3m00s" in line  # 30 in a minute: 90 more in three
    assert "ETA" not in format_progress("x", 120, 120, 60.0)  # done: no estimate
    assert "ETA" not in format_progress("x", 0, 120, 5.0)  # nothing done yet: no estimate from nothing


def test_log_paths():
    assert log_path("runs/demo", "demo") == "runs/demo/attrpipe-demo.log"
    assert log_path("runs/x", "study threshold") == "runs/x/attrpipe-study-threshold.log"
    assert log_path("s3://bucket/runs/x", "loop") == "runs/logs/bucket_runs_x-attrpipe-loop.log"  # kept locally
    assert log_path(None, "loop") is None


def test_session_inside_a_session_and_without_a_log_changes_nothing(tmp_path, capsys):
    with session(None):
        print("plain")
    assert capsys.readouterr().out == "plain\n"


def test_each_stage_leaves_one_line_with_its_numbers():
    sft_eval = {"accuracy": 0.283, "parse_failure_rate": 0.05, "seconds": 40.0}
    m = {"method": "dpo", "stages": ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval"],
         "finished": {"sft/eval": sft_eval}}
    assert stage_summary("sft/eval", "eval", sft_eval, m) == "[loop] sft/eval: accuracy 28.3%, 5.0% unparsed (40s)"
    ev = {"accuracy": 0.331, "parse_failure_rate": 0.04, "seconds": 35.0}
    assert "+4.8 points over the seed SFT" in stage_summary("round-1/eval", "eval", ev, m)
    counts = {"listing_attributes": 540, "kept": 300, "pairs": 420, "chains": 3780, "chains_unparsed": 400}
    pl = {"counts": counts, "premise": {"single_chain": 0.367, "consensus_kept": 0.5}, "seconds": 200.0}
    line = stage_summary("round-1/pseudolabel", "pseudolabel", pl, m)
    assert "540 listing-attributes, 300 kept, 420 pairs" in line and "kept consensus 50.0%, a chain 36.7%" in line
    assert stage_summary("round-1/train", "dpo", {"final_step": 50, "seconds": 90.0}, m) == \
        "[loop] round-1/train: 50 steps (90s)"
    assert "copied unchanged" in stage_summary("round-1/train", "dpo", {"skipped": "no pairs; adapter copied "
                                                                         "unchanged", "seconds": 0.0}, m)
    m["finished"].update({"round-1/pseudolabel": pl, "round-1/eval": ev})
    table = loop_table(m).splitlines()
    assert "lift" in table[0] and "+4.8" in table[2] and "+" not in table[1]


def test_a_command_session_names_its_log_file_last(tmp_path, capsys):
    from attrpipe.console import command_session

    with command_session(str(tmp_path / "run"), "loop") as log:
        echo("stage line")
    out = capsys.readouterr().out.splitlines()
    assert log == str(tmp_path / "run" / "attrpipe-loop.log")
    assert out == ["stage line", f"log: {log}"]
    with command_session(str(tmp_path / "run"), "loop", verbose=True) as log:
        echo("verbose")
    assert log is None and capsys.readouterr().out == "verbose\n"


def test_an_evaluation_line_and_the_table_show_the_vote_and_the_fit():
    vote = {"accuracy": 0.52, "parse_failure_rate": 0.01, "scored": 540, "num_chains": 7, "temperature": 1.0}
    sft_eval = {"accuracy": 0.44, "parse_failure_rate": 0.05, "seconds": 40.0, "vote": vote,
                "fit": {"accuracy": 0.9, "parse_failure_rate": 0.0, "scored": 540}}
    m = {"method": "dpo", "stages": ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval"],
         "finished": {"sft/eval": sft_eval}}
    line = stage_summary("sft/eval", "eval", sft_eval, m)
    assert "the vote of 7 chains 52.0% (+8.0 over the greedy answer)" in line and "seed split 90.0% (fit)" in line
    pl = {"counts": {"listing_attributes": 9, "kept": 3, "pairs": 4, "chains": 63, "chains_unparsed": 5},
          "premise": {"single_chain": 0.4, "consensus_kept": 0.7, "greedy_kept": 0.61}, "seconds": 9.0}
    assert "kept consensus 70.0%, a chain 40.0%, the greedy answer on the kept 61.0%" in stage_summary(
        "round-1/pseudolabel", "pseudolabel", pl, m)
    pl = {"counts": {"kept": 3, "pairs": 4}, "premise": {"single_chain": 0.4, "consensus_kept": 0.7,
                                                         "greedy_kept": 0.61}}
    m["finished"].update({"round-1/pseudolabel": pl, "round-1/eval": {"accuracy": 0.5, "parse_failure_rate": 0.0}})
    table = loop_table(m).splitlines()
    assert "vote" in table[0] and "52.0%" in table[1] and "61.0%" in table[2]
    assert table[-1] == "the seed SFT answers 90.0% of its own labeled seed split right (fit)"
