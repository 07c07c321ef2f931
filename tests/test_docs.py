"""The operator documentation cannot drift from the code.

- `docs/configuration.md` is exactly what `arrears config --format markdown` prints (`make config-docs`);
- every setting has a `Field(description=...)`;
- `docs/schemas/` is exactly what `arrears schemas export` writes (`make schemas`);
- `docs/topics.md` names every topic and DLQ topic, and links every event schema;
- README.md names every `arrears` command and every make target, and only real ones;
- relative links (and their #anchors) in README.md, docs/ and the other READMEs resolve, inside the repository;
- no doc, docstring or comment names a `../` path that is not a file of this repository.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from pathlib import Path

import pytest
import typer.main
from arrears_cli.__main__ import app
from arrears_cli.commands.config import collect, render_markdown, undocumented
from arrears_cli.commands.schemas import export
from arrears_shared.events import EVENT_TYPES
from arrears_shared.topology import all_topics

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(
        actual.splitlines(),
        expected.splitlines(),
        f"{name} (committed)",
        f"{name} (from the code)",
        lineterm="",
    )
    return "\n".join(list(lines)[:60])


def test_every_setting_has_a_description() -> None:
    missing = undocumented()
    assert not missing, (
        "settings without Field(description=...) — add one in the service's settings.py:\n  "
        + "\n  ".join(missing)
    )


def test_configuration_reference_is_generated_from_the_code() -> None:
    expected = render_markdown(collect())
    path = DOCS / "configuration.md"
    actual = path.read_text() if path.exists() else ""
    if actual != expected:
        pytest.fail(
            "docs/configuration.md is out of date with the settings classes; run `make config-docs`.\n"
            + _diff(expected, actual, "docs/configuration.md"),
            pytrace=False,
        )


def test_secret_defaults_are_never_printed() -> None:
    text = render_markdown(collect())
    secrets = [s for s in collect() if s.secret]
    assert {s.env for s in secrets} >= {"ARREARS_DATABASE_URL", "ARREARS_QUO_API_KEY"}
    for s in secrets:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{s.env}` |"))
        assert "`" not in row.split("|")[3], f"{s.env}: a default is shown for a secret: {row}"
    assert "postgres@127.0.0.1" not in text  # the built-in database URL default


def test_schemas_in_docs_are_generated_from_the_models(tmp_path: Path) -> None:
    export(tmp_path)
    committed = DOCS / "schemas"
    expected = {p.name: p.read_text() for p in tmp_path.iterdir()}
    actual = {p.name: p.read_text() for p in committed.iterdir()} if committed.exists() else {}
    stale = sorted(n for n in expected if actual.get(n) != expected[n])
    extra = sorted(set(actual) - set(expected))
    assert not stale and not extra, (
        f"docs/schemas is out of date (differs: {stale}, no longer generated: {extra}); run `make schemas`"
    )


def test_topics_doc_covers_every_topic_and_schema() -> None:
    text = (DOCS / "topics.md").read_text()
    generated = (DOCS / "topology.md").read_text()  # from the services' topology.py (make topology)
    missing = [t for t in all_topics() if f"`{t}`" not in text + generated]
    assert not missing, f"docs/topics.md and docs/topology.md do not mention these topics: {missing}"
    unlinked = [t.ce_type for t in EVENT_TYPES if f"(schemas/{t.ce_type}.json)" not in text]
    assert not unlinked, f"docs/topics.md does not link the schema of: {unlinked}"


def _cli_commands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _make_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    return sorted(set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M)))


def test_readme_documents_every_command_and_make_target() -> None:
    readme = README.read_text()
    undocumented_cmds = [c for c in _cli_commands() if f"arrears {c}" not in readme]
    assert not undocumented_cmds, f"README.md does not document `arrears {undocumented_cmds}`"
    targets = _make_targets()
    undocumented_targets = [t for t in targets if f"make {t}" not in readme]
    assert not undocumented_targets, f"README.md does not document make targets: {undocumented_targets}"
    unknown = sorted({t for t in re.findall(r"`make ([\w-]+)", readme)} - set(targets))
    assert not unknown, f"README.md mentions make targets the Makefile does not have: {unknown}"


def test_readme_links_every_document_in_docs() -> None:
    readme = README.read_text()
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if f"](docs/{p.name})" not in readme]
    assert not unlinked, f"README.md's documentation table does not link: {unlinked}"


# -- links ---------------------------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower-case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    keep = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return keep.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _FENCE.sub("", md.read_text()), re.M):
        s = _slug(h)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def _doc_files() -> list[Path]:
    readmes = [*sorted(ROOT.glob("*/README.md")), *sorted(ROOT.glob("services/*/README.md"))]
    readmes = [p for p in readmes if not p.parent.name.startswith(".")]  # not .venv, .pytest_cache, ...
    return [p for p in [README, *readmes, *sorted(DOCS.glob("*.md"))] if p.exists()]


def _source_files() -> list[Path]:
    return [
        p
        for d in ("shared", "services", "cli", "emulators", "deploy", "bench")
        for p in sorted((ROOT / d).rglob("*.py"))
    ]


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for md in _doc_files():
        for target in _LINK.findall(_FENCE.sub("", md.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.is_relative_to(ROOT):
                broken.append(f"{md.relative_to(ROOT)}: {target} (outside the repository)")
            elif not dest.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n  " + "\n  ".join(broken)


_UP_PATH = re.compile(r"`(\.\./[^`\s]+)`")


def test_no_doc_or_docstring_names_a_file_outside_the_repository() -> None:
    """The docs stand alone: a `../path` written in backticks (docs, docstrings, comments) names a file of this
    repository, relative to the file it is written in, never one beside the repository."""
    bad = []
    for f in [*_doc_files(), *_source_files()]:
        for ref in _UP_PATH.findall(f.read_text()):
            dest = (f.parent / ref.partition("#")[0]).resolve()
            if not dest.is_relative_to(ROOT):
                bad.append(f"{f.relative_to(ROOT)}: {ref} (outside the repository)")
            elif not dest.exists():
                bad.append(f"{f.relative_to(ROOT)}: {ref} (no such file)")
    assert not bad, "references to files that are not in the repository:\n  " + "\n  ".join(bad)


def test_security_matrix_is_generated_from_the_code() -> None:
    from arrears_cli.commands.security import render_into

    path = DOCS / "security.md"
    actual = path.read_text()
    expected = render_into(actual)
    if actual != expected:
        pytest.fail(
            "docs/security.md's routes x roles matrix is out of date with the routes; run `make security-docs`.\n"
            + _diff(expected, actual, "docs/security.md"),
            pytrace=False,
        )
