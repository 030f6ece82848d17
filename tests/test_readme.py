"""Every Python snippet of the README runs as copied: alone, in a fresh namespace, from an
empty directory (each defines every name it uses)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_its_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)),
                         ids=[s.splitlines()[0][:40] for s in SNIPPETS])
def test_a_readme_snippet_runs_as_copied(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = compile(SNIPPETS[index], f"README.md snippet {index + 1}", "exec")
    exec(code, {"__name__": "__readme__"})
