"""deploy/ram-policy.json names exactly the actions the code calls with the function role, plus what FC itself does
with the role for this template (SLS writes, the VPC's network interfaces, the failure destination's SendMessage),
on exactly this template's resources; deploy/trust-policy.json lets FC assume the role.

"What the code calls" is read from the code, not from a list kept beside the policy: the POP actions from the
constants the adapters send (TOKEN_ACTION, ANSWER_SHAPES) and the products from the endpoints' host names; the MNS
operations from the SDK methods the queue adapter calls for the methods the re-drive uses on the DLQ; the FC
operation from the fc2 method the dispatcher calls."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from local.build import built_template, flow_actions, render_policy, template_values
from tests.unit.test_template import DEPLOY_ENV

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "deploy" / "ram-policy.json"
TRUST = REPO / "deploy" / "trust-policy.json"
# FC attaches the service to the VPC with the service role: the VPC statement of AliyunServiceRolePolicyForFC.
VPC_ACTIONS = {
    "vpc:DescribeVSwitchAttributes",
    "vpc:DescribeVpcAttribute",
    "ecs:CreateNetworkInterface",
    "ecs:DeleteNetworkInterface",
    "ecs:DescribeNetworkInterfaces",
    "ecs:CreateNetworkInterfacePermission",
    "ecs:DeleteNetworkInterfacePermission",
    "ecs:DescribeNetworkInterfacePermissions",
}


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def product(endpoint: str) -> str:
    return (urlsplit(endpoint).hostname or "").split(".")[0]


def calls_on(tree: ast.AST, receiver: str | None = None) -> set[str]:
    """Attribute names called in `tree` (`x.name(...)`), only on a variable named `receiver` when given."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if receiver is None or (isinstance(target, ast.Name) and target.id == receiver):
                found.add(node.func.attr)
    return found


def class_methods(path: Path, name: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def pop_actions() -> set[str]:
    from shared.adapters.alicom import TOKEN_ACTION
    from shared.settings import ALICOM_API_ENDPOINT, FLOW_API_ENDPOINT

    flow = product(FLOW_API_ENDPOINT)
    shapes = flow_actions("charge", resubmits=True) | flow_actions("cdp", resubmits=True)
    assert {a.split(":")[0] for a in shapes} == {flow}
    return {f"{product(ALICOM_API_ENDPOINT)}:{TOKEN_ACTION}"} | shapes


def dlq_actions() -> set[str]:
    """SDK calls made by the MnsQueue methods that the re-drive calls on the DLQ (transitively through self._x)."""
    import mns.queue

    redrive = ast.parse((REPO / "shared" / "services" / "redrive.py").read_text())
    used = calls_on(redrive, "queue")
    methods = class_methods(REPO / "shared" / "adapters" / "queue.py", "MnsQueue")
    sdk = {  # the SDK's Queue methods that send a request (not set_encoding, set_debug ...)
        name
        for name, method in inspect.getmembers(mns.queue.Queue, inspect.isfunction)
        if not name.startswith("_") and "mns_client." in inspect.getsource(method)
    }
    seen, todo, operations = set(), [m for m in used if m in methods], set()
    while todo:
        method = todo.pop()
        if method in seen:
            continue
        seen.add(method)
        called = calls_on(methods[method])
        todo += [m for m in called if m in methods]
        operations |= called & sdk
    assert operations, "the re-drive calls no MNS operation?"
    return {f"mns:{camel(op)}" for op in operations}


def fc_actions() -> set[str]:
    import fc2

    dispatch = ast.parse((REPO / "shared" / "adapters" / "dispatch.py").read_text())
    sdk = {name for name, _ in inspect.getmembers(fc2.Client, inspect.isfunction) if not name.startswith("_")}
    return {f"fc:{camel(op)}" for op in calls_on(dispatch) & sdk}


def platform_actions(document: dict) -> set[str]:
    values = template_values(document)
    actions = set()
    service = next(iter(document["services"].values()))["props"]["service"]
    if service.get("logConfig"):
        actions.add("log:PostLogStoreLogs")
    if service.get("vpcConfig"):
        actions |= VPC_ACTIONS
    if values["failure_destination"].startswith("acs:mns:"):
        actions.add("mns:SendMessage")  # FC sends the processor's failed events to the DLQ with the role
    return actions


@pytest.fixture(scope="module")
def document() -> dict:
    return built_template(DEPLOY_ENV, strict=True)


def actions_of(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_the_policies_parse_and_allow_only():
    for path in (POLICY, TRUST):
        policy = json.loads(path.read_text())
        assert policy["Version"] == "1" and policy["Statement"]
        assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])


def test_the_policy_names_exactly_what_the_code_calls_and_fc_needs(document):
    wanted = pop_actions() | dlq_actions() | fc_actions() | platform_actions(document)
    assert actions_of(json.loads(POLICY.read_text())) == wanted
    assert fc_actions() == {"fc:InvokeFunction"}
    assert dlq_actions() == {"mns:BatchReceiveMessage", "mns:BatchDeleteMessage"}


def test_the_rendered_policy_keeps_the_configured_flow_api_only(document):
    rendered = actions_of(render_policy(document))
    assert {a for a in rendered if a.startswith("dycdpapi:")} == {"dycdpapi:QueryChargeDetail", "dycdpapi:Charge"}
    cdp = built_template({**DEPLOY_ENV, "FLOW_API": "cdp", "SWEEP_NOT_FOUND": "fail"}, strict=True)
    assert {a for a in actions_of(render_policy(cdp)) if a.startswith("dycdpapi:")} == {"dycdpapi:QueryCdpOrder"}
    assert "${" not in json.dumps(render_policy(document))  # every placeholder filled


def test_the_rendered_policy_names_this_templates_resources_only(document):
    values = template_values(document)
    region, account, service = values["region"], values["account_id"], values["service"]
    by_action = {}
    for statement in render_policy(document)["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in statement["Action"]:
            by_action[action] = set(resources)
    invoked = {re.sub(r"^.*/functions/", "", r) for r in by_action["fc:InvokeFunction"]}
    assert invoked == {"processor", "sweep"}  # the drainer's async dispatch, the sweep's SWEEP_SELF_INVOKE
    assert values["self_invoke"] and {"processor", "sweep"} <= set(values["functions"])
    assert all(r.startswith(f"acs:fc:{region}:{account}:services/{service}") for r in by_action["fc:InvokeFunction"])
    queue = values["failure_destination"].replace("acs:mns:", "").split("/queues/")[1].split("/")[0]
    dlq = {f"acs:mns:{region}:{account}:/queues/{queue}/messages"}
    for action in ("mns:SendMessage", "mns:BatchReceiveMessage", "mns:BatchDeleteMessage"):
        assert by_action[action] == dlq
    log = values["log"]
    assert by_action["log:PostLogStoreLogs"] == {
        f"acs:log:{region}:{account}:project/{log['project']}/logstore/{log['logstore']}"
    }
    assert by_action["dybaseapi:QueryTokenForMnsQueue"] == {"*"}  # POP actions have no resource-level permissions


def test_fc_may_assume_the_role():
    (statement,) = json.loads(TRUST.read_text())["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"Service": ["fc.aliyuncs.com"]}
