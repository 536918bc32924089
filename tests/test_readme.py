"""The README's file tree states each main file's size in lines; claims like that drift, so check them here."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def file_tree_sizes():
    """{path: stated lines} from the ```-fenced tree of the README's "## Files" section (lines ending in "(N)" or
    "(N lines)"; a folder line such as "kernels/" prefixes the indented lines under it)."""
    text = (REPO / "README.md").read_text()
    tree = text.split("## Files", 1)[1].split("```", 2)[1]
    sizes, folder = {}, ""
    for line in tree.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.endswith("/") and not line.startswith(" "):
            folder = name
            continue
        m = re.search(r"\(([\d,]+)(?: lines)?\)$", line.strip())
        if m:
            sizes[(folder if line.startswith(" ") else "") + name] = int(m.group(1).replace(",", ""))
    return sizes


def test_file_tree_line_counts_are_within_3_percent():
    sizes = file_tree_sizes()
    assert {"azr.py", "model.py", "sandbox.py", "kernels/sampling.py"} <= set(sizes), sorted(sizes)
    wrong = {}
    for path, stated in sizes.items():
        actual = len((REPO / path).read_text().splitlines())
        if abs(actual - stated) > 0.03 * actual:
            wrong[path] = (stated, actual)
    assert not wrong, f"README file tree: (stated, actual) line counts {wrong}; update the README"
