"""`make local-up` / `make local-down`: the whole stack in the background, found through stack.env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from mns.account import Account
from mns.mns_exception import MNSServerException
from process_support import processes_mentioning

REPO = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {
    "ALICOM_MNS_ENDPOINT",
    "ALICOM_API_ENDPOINT",
    "FC_ENDPOINT",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALICOM_MESSAGE_TYPE",
    "ALICOM_QUEUE_NAME",
    "LEDGER_URL",
    "ALICOM_MNS_ADMIN_URL",
    "ALICOM_API_ADMIN_URL",
    "FC_ADMIN_URL",
    "MNS_ADMIN_URL",
}

pytestmark = pytest.mark.slow


def run_local(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def read_env(state_dir: Path) -> dict[str, str]:
    lines = (state_dir / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def query_token(env: dict[str, str]) -> dict:
    client = AcsClient(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], "cn-hangzhou")
    request = CommonRequest()
    request.set_domain(env["ALICOM_API_ENDPOINT"].removeprefix("http://"))
    request.set_protocol_type("http")
    request.set_method("POST")
    request.set_version("2017-05-25")
    request.set_action_name("QueryTokenForMnsQueue")
    request.add_query_param("MessageType", env["ALICOM_MESSAGE_TYPE"])
    request.add_query_param("QueueName", env["ALICOM_QUEUE_NAME"])
    return json.loads(client.do_action_with_exception(request))["MessageTokenDTO"]


def test_two_stacks_run_side_by_side_and_leave_no_process_behind(tmp_path: Path) -> None:
    first, second = tmp_path / "stack-a", tmp_path / "stack-b"
    try:
        for state_dir in (first, second):
            result = run_local("up", "--state-dir", str(state_dir))
            assert result.returncode == 0, result.stderr
        env_a, env_b = read_env(first), read_env(second)
        assert set(env_a) >= REQUIRED_KEYS
        assert env_a["ALICOM_QUEUE_NAME"].startswith("Alicom-Queue-")
        assert env_a["ALICOM_QUEUE_NAME"].endswith("-FlowReport")
        assert env_a["ALICOM_MNS_ENDPOINT"] != env_b["ALICOM_MNS_ENDPOINT"]

        token = query_token(env_a)
        queue = Account(
            env_a["ALICOM_MNS_ENDPOINT"], token["AccessKeyId"], token["AccessKeySecret"], token["SecurityToken"]
        ).get_queue(env_a["ALICOM_QUEUE_NAME"])
        with pytest.raises(MNSServerException) as empty:
            queue.batch_receive_message(16, 0)
        assert empty.value.type == "MessageNotExist"  # the queue exists and the token may read it

        again = run_local("up", "--state-dir", str(first))
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        for state_dir in (first, second):
            run_local("down", "--state-dir", str(state_dir))
    assert not (first / "stack.env").exists()
    assert processes_mentioning(str(first)) == []
    assert processes_mentioning(str(second)) == []


def test_make_local_up_and_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "made"
    env = {**os.environ, "LOCAL_DIR": str(state_dir)}
    try:
        up = subprocess.run(["make", "-s", "local-up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        assert set(read_env(state_dir)) >= REQUIRED_KEYS
        stats = subprocess.run(
            [sys.executable, "-m", "local", "stats", "mns", "--state-dir", str(state_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stats.returncode == 0 and '"queues"' in stats.stdout, stats.stderr
    finally:
        down = subprocess.run(["make", "-s", "local-down"], cwd=REPO, env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state_dir)) == []


def test_commands_need_a_running_stack(tmp_path: Path) -> None:
    result = run_local("stats", "--state-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no local stack is running" in result.stderr
