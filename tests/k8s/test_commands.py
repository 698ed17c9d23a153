"""Every command a chart template, a k8s/ manifest or a workflow runs exists, with every option it
passes: the command line is taken from the rendered objects (container command + args, the
RayJob's entrypoint) and from the workflows' ``run:`` steps, resolved in the CLI's command tree
and checked against ``python -m tradeloop.cli.main <command> --help``. The same for
``mlflow server`` and for the import paths the RayService's Serve config names."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import ROOT, Rendering, pod_specs

WORKFLOWS = ROOT / ".github" / "workflows"
# Commands the chart must be able to run (issue 10): they must be found in what is rendered.
REQUIRED = {
    ("serve",),
    ("predict",),
    ("features", "apply"),
    ("features", "materialize"),
    ("retrain",),
    ("monitor", "check"),
    ("monitor", "serve"),
}


_INVOCATION = re.compile(r"(?:^|[;&|(`]|\bthen|\bdo)\s*(?:[\w./-]*/)?tradeloop(\s+[^;&|)`]*|$)")


def _script_commands(script: str) -> list[list[str]]:
    """argv of every ``tradeloop …`` in a shell script (``${{ … }}`` stands for one word)."""
    script = re.sub(r"\$\{\{.*?\}\}", "X", script).replace("\\\n", " ")
    found = []
    for line in script.splitlines():
        for match in _INVOCATION.finditer(line.strip()):
            try:
                words = shlex.split(match.group(1), comments=True)
            except ValueError:
                words = match.group(1).split()
            found.append(["tradeloop", *words])
    return found


def _command_lines(everything: list[Rendering]) -> list[tuple[str, list[str]]]:
    """(where, argv) of every tradeloop / mlflow invocation in the rendered objects."""
    lines = []
    for rendering in everything:
        for obj in rendering.objects:
            for where, pod in pod_specs(obj):
                for container in pod.get("initContainers", []) + pod["containers"]:
                    argv = list(container.get("command", [])) + list(container.get("args", []))
                    if argv and argv[0] in {"tradeloop", "mlflow"}:
                        lines.append((f"{rendering.name} {where}/{container['name']}", argv))
            if obj["kind"] == "RayJob":
                shell, flag, script = shlex.split(obj["spec"]["entrypoint"])
                assert (shell, flag) == ("bash", "-c")
                commands = _script_commands(script)
                assert commands, f"{rendering.name}: the RayJob runs no tradeloop command"
                lines += [(f"{rendering.name} RayJob entrypoint", argv) for argv in commands]
    return lines


def _workflow_lines() -> list[tuple[str, list[str]]]:
    """tradeloop invocations in the workflows' run steps."""
    lines = []
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for job_name, job in (doc.get("jobs") or {}).items():
            for step in job.get("steps") or []:
                lines += [(f"{path.name} {job_name}", argv) for argv in _script_commands(step.get("run", ""))]
    return lines


@cache
def _cli() -> Any:
    """The click command tree of the CLI (typer vendors its own click: duck-typed below)."""
    import typer.main

    from tradeloop.cli.main import app

    return typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _option_names(command: Any) -> set[str]:
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts) if name.startswith("-")}


def _takes_value(command: Any, option: str) -> bool:
    for param in command.params:
        if option in (*param.opts, *param.secondary_opts):
            return not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    return False


class NotInCli(Exception):
    """A command line names a command or option the CLI does not have."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise NotInCli(message)


def resolve(argv: list[str]) -> tuple[list[str], list[str]]:
    """(sub-command path, options used) of a ``tradeloop …`` argv; :class:`NotInCli` names what is missing."""
    command = _cli()
    path: list[str] = []

    def name() -> str:
        return " ".join(["tradeloop", *path])

    used: list[str] = []
    words = argv[1:]
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            _require(option in _option_names(command), f"{name()} has no option {option}")
            used.append(option)
            if "=" not in word and _takes_value(command, option) and words:
                words.pop(0)
        elif _is_group(command):
            _require(word in command.commands, f"{name()} has no command {word!r}")
            command = command.commands[word]
            path.append(word)
        # else: an argument of a leaf command
    _require(not _is_group(command), f"{name()} needs a sub-command")
    return path, used


def _help(*words: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *words, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, f"{' '.join(words)} --help exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def test_every_rendered_and_workflow_command_exists(everything: list[Rendering]) -> None:
    lines = _command_lines(everything) + _workflow_lines()
    tradeloop: dict[tuple[str, ...], set[str]] = {}
    mlflow: set[str] = set()
    failures: dict[str, str] = {}  # what is missing → one place that runs it
    for where, argv in lines:
        if argv[0] == "mlflow":
            assert argv[1] == "server", where
            mlflow |= {a.split("=", 1)[0] for a in argv[2:] if a.startswith("--")}
            continue
        try:
            path, used = resolve(argv)
        except NotInCli as exc:
            failures.setdefault(f"{' '.join(argv)}: {exc}", where)
            continue
        tradeloop.setdefault(tuple(path), set()).update(used)
    missing = {" ".join(c) for c in REQUIRED} - {" ".join(c) for c in tradeloop}
    assert not failures, "commands the templates or workflows run that the CLI lacks:\n" + "\n".join(
        f"{what} (run by {where}, …)" for what, where in sorted(failures.items())
    )
    assert not missing, f"no template runs: {sorted(missing)}"
    for path, options in sorted(tradeloop.items()):
        text = _help("tradeloop.cli.main", *path)
        for option in options - {"--home", "--json", "--help"}:
            assert option in text, f"`tradeloop {' '.join(path)} --help` does not list {option}"
    text = _help("mlflow", "server")
    assert mlflow
    assert all(option in text for option in mlflow), sorted(o for o in mlflow if o not in text)


def _definition(dotted: str) -> ast.AST:
    """The top-level definition ``module:name`` (or ``module.name``) names, found without importing
    the module (Ray Serve's import is slow): a def, a class, an assignment or an import."""
    module, _, name = dotted.replace(":", ".").rpartition(".")
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    assert spec.origin, f"no source for {module}"
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return node
        if isinstance(node, ast.ImportFrom | ast.Import) and name in {a.asname or a.name for a in node.names}:
            return node
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node
    raise AssertionError(f"{module} defines no {name}")


def test_rayservice_import_paths_resolve(everything: list[Rendering]) -> None:
    """What the RayService's Ray Serve config imports: the app builder and the gRPC servicer."""
    names = set()
    for rendering in everything:
        for obj in rendering.kinds("RayService"):
            config = yaml.safe_load(obj["spec"]["serveConfigV2"])
            names |= {app["import_path"] for app in config["applications"]}
            names |= set(config["grpc_options"]["grpc_servicer_functions"])
    assert names
    for name in sorted(names):
        _definition(name)


def test_rayservice_builder_reads_every_arg_the_chart_passes(everything: list[Rendering]) -> None:
    for rendering in everything:
        for obj in rendering.kinds("RayService"):
            for app in yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"]:
                builder = _definition(app["import_path"])
                read = {
                    node.args[0].value
                    for node in ast.walk(builder)
                    if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                }
                assert set(app.get("args", {})) <= read, f"{rendering.name}: {set(app['args']) - read} unread"


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["tradeloop", "--home", "/h", "--json", "predict", "EURUSD", "1h", "--url", "u"], ["predict"]),
        (["tradeloop", "features", "materialize", "--incremental"], ["features", "materialize"]),
    ],
)
def test_command_lines_resolve_to_their_command(argv: list[str], path: list[str]) -> None:
    assert resolve(argv)[0] == path


def test_script_commands_are_found_in_command_position_only() -> None:
    script = (
        "helm template tradeloop x\nrc=0\n"
        '.venv/bin/tradeloop retrain --reason "$R" || rc=$?\nif x; then tradeloop models list; fi'
    )
    assert _script_commands(script) == [
        ["tradeloop", "retrain", "--reason", "$R"],
        ["tradeloop", "models", "list"],
    ]


def test_an_unknown_command_or_option_is_reported() -> None:
    with pytest.raises(NotInCli, match="no command 'nonsense'"):
        resolve(["tradeloop", "nonsense"])
    with pytest.raises(NotInCli, match="no option --nonsense"):
        resolve(["tradeloop", "features", "apply", "--nonsense"])
