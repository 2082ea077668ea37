"""The report at a glance: its first screen (1100 x 800, a laptop's window) shows the accuracy-by-round plot and the
table of what each round did and measured, rendered by a real browser (headless Chromium, `make setup-browser`).
A hand-written loop manifest stands in for a run: no Ray, no model."""

import json
from pathlib import Path

import pytest
from browser import screenshot


def _manifest(rounds: int) -> dict:
    ev = {"accuracy": 0.283, "parse_failure_rate": 0.05, "scored": 270, "per_vertical": {"watch": 0.3, "shoe": 0.2}}
    from attrpipe.premise import chain_premise

    rows = [{"listing_id": "A", "vertical": "watch", "attribute": "colour",
             "chains": [{"answer": x} for x in ("Red", "Red", "Red", "Blue", None, None, None)]}]
    premise = chain_premise(rows, {"A": {"colour": "Red"}}, 0.4)
    fin = {"sft": {"final_step": 100}, "sft/eval": ev}
    stages = ["sft", "sft/eval"]
    for r in range(1, rounds + 1):
        stages += [f"round-{r}/pseudolabel", f"round-{r}/train", f"round-{r}/eval"]
        fin[f"round-{r}/pseudolabel"] = {"counts": {"kept": 300 + r, "pairs": 400 + r}, "premise": premise}
        fin[f"round-{r}/train"] = {"final_step": 50}
        fin[f"round-{r}/eval"] = {**ev, "accuracy": 0.283 + 0.02 * r}
    return {"method": "dpo", "stages": stages, "finished": fin}


def _near(p, rgb, tol=12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(p, rgb))


@pytest.mark.parametrize("rounds", [1, 3])
def test_the_first_screen_shows_the_plot_and_the_whole_rounds_table(tmp_path, rounds):
    from PIL import Image

    from attrpipe.report import write_report

    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "loop.json").write_text(json.dumps(_manifest(rounds)))
    index = Path(write_report([str(run)]))
    page = index.read_text()
    # the plot, then the table with its lift column, before anything else on the page
    assert page.index("accuracy_by_round.png") < page.index("<table>") < page.index("by_vertical.png")
    assert "<th>lift</th>" in page and f"<td>+{2 * rounds:.1f}</td>" in page

    shot = tmp_path / "first.png"
    screenshot(index, shot, tmp_path / "profile", "1100,800")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1100, 800)
    px = img.load()
    w, h = img.size
    # matplotlib's first line colour (#1f77b4): the plot loaded, not a broken-image icon
    assert any(_near(px[x, y], (31, 119, 180), 30) for x in range(0, w, 2) for y in range(0, h, 2))
    # the table's header row (#dde6f3) and every one of its rows: horizontal border lines (#bbb), one above the
    # header and one under each row, all on this screen
    header_rows = [y for y in range(h) if sum(_near(px[x, y], (221, 230, 243), 4) for x in range(0, w, 4)) > 20]
    assert header_rows, "the rounds table's header is not on the first screen"
    borders = [y for y in range(header_rows[0] - 3, h)
               if sum(_near(px[x, y], (187, 187, 187), 10) for x in range(0, w, 2)) > 150]
    lines = [y for i, y in enumerate(borders) if i == 0 or y != borders[i - 1] + 1]  # a 1-2 px line counts once
    assert len(lines) >= 1 + 1 + (1 + rounds), f"table rows visible: {len(lines) - 1} lines of borders at {lines}"
