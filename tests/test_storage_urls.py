"""Storage URLs: drivers, malformed URLs, masked passwords; resuming a study with other settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli.main import main
from nas.search import SearchError, run_search
from nas.search.settings import SearchSettings
from nas.search.storage_url import is_rdb_url, mask_secrets, mask_url, resolve_rdb_url, storage_secrets
from nas.search.study import make_storage
from search_spaces import shipped_space_path

pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")

REPO = Path(__file__).resolve().parents[1]
BASE = {"space": shipped_space_path("combined"), "device": "sim-npu-p32", "dataset": "digits", "population_size": 2}
URL = "postgresql://alice:s3cr%40t-pw@db.example:5432/edgenas?sslpassword=k3y-pass"


def test_passwords_are_masked_in_urls_and_texts():
    assert mask_url(URL) == "postgresql://alice:***@db.example:5432/edgenas?sslpassword=***"
    assert set(storage_secrets(URL)) >= {"s3cr%40t-pw", "s3cr@t-pw", "k3y-pass"}
    text = f"connect {URL} failed for s3cr@t-pw"
    assert not any(s in mask_secrets(text, URL) for s in storage_secrets(URL))
    assert mask_url("sqlite:///results/x/study.db") == "sqlite:///results/x/study.db"
    assert mask_url("results/journal.log") == "results/journal.log"


def test_settings_written_anywhere_carry_the_masked_url():
    settings = SearchSettings(space="s.yaml", device="sim-npu-p32", dataset="digits", storage=URL)
    assert settings.to_dict()["storage"] == mask_url(URL) and settings.storage == URL


@pytest.mark.parametrize("bad", ["postgresql//alice:pw@host/db", "sqlite:/tmp/x.db", "postgres:host/db", "mysql//x"])
def test_a_malformed_url_is_an_error_not_a_journal_path(bad):
    with pytest.raises(SearchError, match="is not a valid URL") as error:
        is_rdb_url(bad)
    assert "pw@" not in str(error.value)


def test_a_plain_postgresql_url_gets_the_installed_driver():
    pytest.importorskip("psycopg2", reason="edgenas[postgres] (psycopg2-binary) is not installed")
    resolved = resolve_rdb_url("postgresql://u:p@localhost/db")
    assert resolved.startswith(("postgresql+psycopg://", "postgresql+psycopg2://"))
    assert resolve_rdb_url("postgres://u:p@localhost/db").startswith("postgresql+")
    assert resolve_rdb_url("postgresql+psycopg2://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"


def test_a_missing_driver_is_one_line_naming_the_package(tmp_path):
    with pytest.raises(SearchError, match=r"driver 'pg8000' is not installed \(pip install pg8000\)"):
        resolve_rdb_url("postgresql+pg8000://u:pw@localhost/db")
    # A Python where neither psycopg nor psycopg2 can be imported (None in sys.modules blocks an import).
    code = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None\n"
        "from nas.cli.main import main\n"
        "sys.exit(main(['search', '--space', 'search_spaces/combined.yaml', '--device', 'sim-npu-p32',"
        f" '--dataset', 'digits', '--mode', 'zeroshot', '--trials', '1', '--results-dir', {str(tmp_path)!r},"
        " '--storage', 'postgresql://u:hunter22@localhost:1/db']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "edgenas[postgres]" in lines[0] and "psycopg2-binary" in lines[0] and "hunter22" not in lines[0]


def test_an_unreachable_database_error_holds_no_password():
    pytest.importorskip("psycopg2", reason="edgenas[postgres] (psycopg2-binary) is not installed")
    settings = SearchSettings(
        space="s.yaml", device="sim-npu-p32", dataset="digits", storage="postgresql://u:hunter22@127.0.0.1:1/db"
    )
    with pytest.raises(SearchError, match="cannot open storage") as error:
        make_storage(settings)
    assert "hunter22" not in str(error.value) and "u:***@" in str(error.value)


def test_the_cli_refuses_a_malformed_url_in_one_line(tmp_path, capsys):
    args = ["search", "--space", str(BASE["space"]), "--device", "sim-npu-p32", "--dataset", "digits"]
    args += ["--mode", "zeroshot", "--trials", "1", "--results-dir", str(tmp_path)]
    assert main([*args, "--storage", "postgresql//u:hunter22@localhost/db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: storage") and "\n" not in err and "hunter22" not in err
    assert not list(tmp_path.glob("postgresql*"))


@pytest.mark.parametrize(
    ("first", "then", "named"),
    [
        ({"mode": "zeroshot"}, {"mode": "multishot"}, "mode: study has 'zeroshot', got 'multishot'"),
        ({"mode": "multishot"}, {"mode": "zeroshot"}, "mode: study has 'multishot', got 'zeroshot'"),
        ({"mode": "zeroshot"}, {"mode": "hybrid"}, "mode: study has 'zeroshot', got 'hybrid'"),
        ({"mode": "zeroshot"}, {"mode": "zeroshot", "proxy": "synflow"}, "proxy: study has"),
        ({"mode": "zeroshot"}, {"mode": "zeroshot", "memory_objective": True}, "memory_objective: study has False"),
        ({"mode": "zeroshot"}, {"mode": "zeroshot", "max_params": 500_000}, "max_params: study has None"),
    ],
)
def test_resuming_with_other_settings_is_one_line(tmp_path, first, then, named):
    recipe = {"epochs": 1, "train_limit": 32, "batch_size": 16, "baseline": False}  # a multishot study in seconds
    run_search(**BASE, **recipe, **first, trials=1, study="same", results_dir=tmp_path)
    with pytest.raises(SearchError, match="this study") as error:
        run_search(**BASE, **recipe, **then, trials=2, study="same", results_dir=tmp_path)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_resuming_with_another_mode_on_the_cli_is_one_line(tmp_path, capsys):
    args = ["search", "--space", str(BASE["space"]), "--device", "sim-npu-p32", "--dataset", "digits"]
    args += ["--trials", "1", "--population-size", "2", "--results-dir", str(tmp_path), "--no-baseline"]
    assert main([*args, "--mode", "zeroshot"]) == 0
    capsys.readouterr()
    assert main([*args, "--mode", "multishot", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: this study ('edgenas') was created with other settings (mode:")
    assert "\n" not in err
