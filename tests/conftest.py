"""Shared fixtures: real data from ../shared/data, fresh workspaces, and the
test session's identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TEST_IDENTITY = "test-analyst"
TEST_PASSPHRASE = "test passphrase, not a secret"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
JAILBREAKBENCH = SHARED_DATA / "jailbreakbench"
CARTPOLE = SHARED_DATA / "imitation-rollouts" / "cartpole_final.npz"


def require_data(path: Path) -> Path:
    """Return ``path``; in CI a missing file fails the test, elsewhere it skips."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data missing in CI: {path}")
        pytest.skip(f"real data not found: {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def session_settings(tmp_path_factory) -> Path:
    """The window's QSettings (recent workspaces, geometry, analyst name) go to
    a file of this test session, never the developer's own; subprocesses
    started by tests inherit it through the environment."""
    path = tmp_path_factory.mktemp("settings") / "workstation.ini"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKSTATION_SETTINGS", str(path))
        yield path


@pytest.fixture(autouse=True, scope="session")
def session_identity(tmp_path_factory):
    """Every test acts as one identity, TEST_IDENTITY, kept in an identity
    folder of this session ($WORKSTATION_HOME) with its passphrase in a file
    ($WORKSTATION_PASSPHRASE_FILE): it is the session signer in this process,
    and CLI subprocesses started by tests unlock it through the environment.
    Yields the Signer."""
    from workstation import identity

    home = tmp_path_factory.mktemp("identity-home")
    secret = tmp_path_factory.mktemp("passphrase") / "passphrase"
    secret.write_text(TEST_PASSPHRASE + "\n")
    secret.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(identity.HOME_ENV, str(home))
        patch.setenv(identity.PASSPHRASE_FILE_ENV, str(secret))
        made = identity.create(TEST_IDENTITY, TEST_PASSPHRASE)
        signer = identity.unlock(made, TEST_PASSPHRASE)
        identity.set_session_signer(signer)
        yield signer
        identity.set_session_signer(None)


@pytest.fixture
def no_session(session_identity):
    """No identity unlocked in this process during the test (as at start-up)."""
    from workstation import identity

    identity.set_session_signer(None)
    yield
    identity.set_session_signer(session_identity)


@pytest.fixture
def make_identity(session_identity):
    """``make_identity(name) -> Signer``: another identity in the session's
    folder (same passphrase; made once, reused by later tests), unlocked; the
    current identity stays TEST_IDENTITY."""
    from workstation import identity

    def make(name: str):
        known = {i.name: i for i in identity.list_identities()}
        made = known.get(name) or identity.create(name, TEST_PASSPHRASE)
        return identity.unlock(made, TEST_PASSPHRASE)
    return make


@pytest.fixture
def hh_rlhf_path() -> Path:
    return require_data(HH_RLHF)


@pytest.fixture
def jailbreakbench_dir() -> Path:
    return require_data(JAILBREAKBENCH)


@pytest.fixture
def cartpole_path() -> Path:
    return require_data(CARTPOLE)


@pytest.fixture
def ws(tmp_path):
    """A fresh, empty workspace, closed after the test."""
    from workstation.workspace import Workspace

    workspace = Workspace.open(tmp_path / "ws.duckdb")
    yield workspace
    workspace.close()



# -- real transformer reward models (tests/hf_models.py), built once per session --

@pytest.fixture(scope="session")
def hf_models_root(tmp_path_factory) -> Path:
    require_data(JAILBREAKBENCH)
    require_data(HH_RLHF)
    return tmp_path_factory.mktemp("hf-models")


@pytest.fixture(scope="session")
def bert_cls_model(hf_models_root):
    """``bert-cls``: MiniLM BertForSequenceClassification, head fitted on
    JailbreakBench, legacy export (an ``HfTestModel``)."""
    from tests.hf_models import build_bert_cls

    return build_bert_cls(hf_models_root / "bert-cls")


@pytest.fixture(scope="session")
def bert_cls_dynamo_model(hf_models_root, bert_cls_model):
    from tests.hf_models import build_bert_cls_dynamo

    return build_bert_cls_dynamo(hf_models_root / "bert-cls-dynamo", bert_cls_model)


@pytest.fixture(scope="session")
def bert_cls_int8_model(hf_models_root, bert_cls_model):
    from tests.hf_models import build_bert_cls_int8

    return build_bert_cls_int8(hf_models_root / "bert-cls-int8", bert_cls_model)


@pytest.fixture(scope="session")
def decoder_model(hf_models_root):
    """``decoder``: tiny Llama-style classifier, last-token pooling, ChatML template."""
    from tests.hf_models import build_decoder

    return build_decoder(hf_models_root / "decoder")
