"""The README tells the truth about the configuration: every setting is documented."""

from __future__ import annotations

from pathlib import Path

from voice.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        f"VOICE_{name.upper()}" for name in Settings.model_fields
        if f"VOICE_{name.upper()}" not in text
    ]
    assert missing == [], f"settings missing from README.md's Configuration table: {missing}"
