from click.testing import CliRunner

from nmig.cli import main
from nmig.secrets import api_address, make_api_token, redact


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "emulate" in result.output


def test_token_round_trip_and_redaction() -> None:
    token = make_api_token("http://127.0.0.1:5000", "secret-key")
    assert api_address(token) == "http://127.0.0.1:5000"
    assert token not in redact(f"failed with {token}", token)
    assert "<redacted>" in redact(f"failed with {token}")
