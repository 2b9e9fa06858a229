"""The README's configuration table is the settings model's, not a hand-kept copy."""

from local.docs import README, rendered


def test_configuration_table_matches_the_settings_model():
    current = README.read_text()
    assert current == rendered(current), "README.md configuration table is out of date: run `make docs`"
