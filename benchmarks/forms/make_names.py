"""Write ``voicepipe/providers/local/sphinx_names.py``: the names of the e-mail grammar.

The names come from a list kept by others, not from the benchmark's answers,
so that the e-mail figures of ``run.py`` do not measure a grammar fitted to
its own corpus: Faker's ``en_US`` person provider (the US Social Security
Administration's 200 most given names of each decade from the 1960s to the
1990s, both sexes, and the Census Bureau's 1,000 most common surnames), each
list in order of frequency. Run from the repository root::

    pip install 'faker==40.54.0'
    python benchmarks/forms/make_names.py

Words that PocketSphinx's dictionary lacks are left out when the grammar is
built, not here.
"""

from __future__ import annotations

import textwrap
from importlib.metadata import version
from pathlib import Path

from faker.providers.person.en_US import Provider  # type: ignore[import-not-found]

OUT = Path(__file__).resolve().parents[2] / "src/voicepipe/providers/local/sphinx_names.py"


def by_frequency(*weighted: dict[str, float]) -> list[str]:
    total: dict[str, float] = {}
    for names in weighted:
        for name, weight in names.items():
            key = name.casefold()
            total[key] = total.get(key, 0.0) + weight
    return sorted(total, key=lambda name: (-total[name], name))


def block(names: list[str]) -> str:
    return textwrap.fill(" ".join(names), width=88, initial_indent="", subsequent_indent="")


def main() -> None:
    first = by_frequency(Provider.first_names_female, Provider.first_names_male)
    last = by_frequency(Provider.last_names)
    OUT.write_text(
        f'''"""Common US first names and surnames, for the e-mail grammar (generated: do not edit).

Written by ``benchmarks/forms/make_names.py`` from Faker {version("faker")}'s ``en_US``
person provider: the SSA's 200 most given names of each decade, 1960s to 1990s
({len(first)} first names), and the Census Bureau's {len(last)} most common
surnames, most frequent first. Not taken from any test or benchmark answer.
"""

FIRST_NAMES = """
{block(first)}
""".split()  # noqa: SIM905 (a list literal would be 1,700 lines)

SURNAMES = """
{block(last)}
""".split()  # noqa: SIM905 (a list literal would be 1,700 lines)
'''
    )
    print(f"{OUT}: {len(first)} first names, {len(last)} surnames")


if __name__ == "__main__":
    main()
