"""The ``harness`` command line (click). Heavy modules are imported inside each command so that
``harness --help`` answers in a fraction of a second."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click


def _fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autoresearch-harness")
def main():
    """Autonomous ML research in a git sandbox: an agent edits train.py, the harness checks,
    trains, scores (val_bpb), keeps or discards, and records every experiment."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--corpus", default="shakespeare", show_default=True,
              help="shakespeare | tinystories | pystdlib | a path to a text file or folder")
@click.option("--time-budget", "time_budget", type=int, default=60, show_default=True,
              help="training seconds per experiment (use 300 on a GPU, as autoresearch does)")
@click.option("--tag", default=None, help="run tag; experiments go on branch autoresearch/<tag> (default: today, e.g. nov21)")
@click.option("--template", "template_name", type=click.Choice(["scratch", "finetune"]), default="scratch",
              show_default=True, help="scratch: train a small GPT from scratch; finetune: fine-tune a pretrained model "
                                      "(LoRA by default; needs the finetune extra)")
@click.option("--base-model", default=None,
              help="finetune: the model to fine-tune: a local folder or a Hugging Face id (default: the embedded "
                   "SmolLM2-135M-Instruct, converted once, offline)")
@click.option("--adopt", "adopt_path", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="turn this existing autoresearch checkout (karpathy/autoresearch or a fork) into a sandbox: in "
                   "place, or cloned into DIRECTORY when given; its train.py, prepare.py, program.md and data stay")
def init(directory: Path | None, corpus: str, time_budget: int, tag: str | None, template_name: str,
         base_model: str | None, adopt_path: Path | None):
    """Create a sandbox in DIRECTORY and prepare its data (or adopt a checkout with --adopt)."""
    from .init import InitError, create_sandbox, default_tag

    if adopt_path is not None:
        from .adopt import adopt

        try:
            done = adopt(adopt_path, directory, tag)
        except InitError as exc:
            _fail(str(exc))
        for note in done.notes:
            click.echo(note)
        directory, cfg = done.path, done.cfg
    elif directory is None:
        _fail("give a DIRECTORY for the new sandbox (or --adopt PATH to adopt an autoresearch checkout)", 2)
    else:
        try:
            cfg = create_sandbox(directory, corpus, time_budget, tag or default_tag(), template_name=template_name,
                                 base_model=base_model)
        except InitError as exc:
            _fail(str(exc))
    click.echo(f"\nSandbox ready in {directory} on branch {cfg.branch} (time budget {cfg.time_budget_s} s).")
    click.echo("Next:")
    click.echo(f"  harness start {directory} --hours 8        # run experiments (Ctrl-C stops cleanly)")
    click.echo(f"  harness status {directory}                 # from another terminal")
    click.echo(f"  harness log {directory}                    # the results so far")
    click.echo(f"  cd {directory} && claude                    # or drive it from Claude Code / another MCP client")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--hours", type=float, help="stop starting experiments after this many hours")
@click.option("--minutes", type=float, help="stop starting experiments after this many minutes")
@click.option("--max-experiments", type=int,
              help="record at most this many experiments in this session (baseline repeats, confirmation runs and "
                   "re-measures count: each is a row and a training run)")
@click.option("--agent", "agent_spec", default=None,
              help="hybrid (the optimiser with the embedded model proposing 3 trials in 10; the default of harness.toml) "
                   "| optuna (TPE over the knobs, no LLM) | optuna:cmaes | optuna:random | local (the embedded model "
                   "alone) | local:PATH.gguf | scripted:FILE | anthropic:MODEL | openai:MODEL")
@click.option("--base-url", default=None,
              help="API endpoint (default: $ANTHROPIC_BASE_URL / $OPENAI_BASE_URL), e.g. http://127.0.0.1:8000/v1")
@click.option("--tool-choice", default="auto", show_default=True,
              help="API models: auto | required | propose_edit (force the edit tool: small local models)")
@click.option("--max-llm-usd", type=float, default=None,
              help="API models: stop when this session's LLM spend reaches this many dollars (known models)")
@click.option("--seed", type=int, default=None, help="sampling seed of the local model; base seed of the optimiser")
@click.option("--on-interrupted", type=click.Choice(["record", "rerun"]), default="record", show_default=True,
              help="an experiment a killed harness left running: record it as interrupted, or run it again (once)")
@click.option("--gpus", default=None, metavar="IDS",
              help="run one experiment per GPU at once, e.g. --gpus 0,1,2,3 (each in its own git work tree)")
@click.option("--workers", type=int, default=None,
              help="run N experiments at once on CPUs, the cores split between them (each in its own git work tree); "
                   "with --ray, at most N at once")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="run each experiment as a Ray task with one GPU on the cluster at ADDRESS (as many at once as it "
                   "has GPUs)")
def start(directory: Path, hours, minutes, max_experiments, agent_spec, base_url, tool_choice, max_llm_usd, seed,
          on_interrupted, gpus, workers, ray_address):
    """Run the research loop in the sandbox DIRECTORY (default: here).

    The first experiment of a new sandbox is the unmodified baseline; on a sandbox that has run
    before, the run continues (numbers, best result, history), after repairing whatever a killed
    harness left. An experiment that has started finishes; Ctrl-C, SIGTERM or `harness stop` end
    the session after it, a second Ctrl-C (or `harness stop --now`) aborts it at once, recorded as
    interrupted. No new experiment starts when the time left is shorter than a typical one.
    """
    if sum(x is not None for x in (hours, minutes)) > 1:
        _fail("give --hours or --minutes, not both", 2)
    if hours is None and minutes is None and max_experiments is None:
        _fail("say how long to run: --hours H, --minutes M or --max-experiments N", 2)
    from git import GitCommandError

    from .agents import AgentSpecError, make_agent
    from .config import ConfigError, load
    from .display import Display
    from .ledger import LedgerError
    from .loop import Limits, Session, run_until
    from .sandbox import SandboxError
    from .state import AlreadyRunning

    try:
        cfg = load(directory)
    except ConfigError as exc:
        _fail(str(exc))
    duration_s = hours * 3600 if hours is not None else (minutes * 60 if minutes is not None else None)
    limits = Limits(deadline=None if duration_s is None else time.time() + duration_s, max_experiments=max_experiments)
    display = Display(cfg.time_budget_s, cfg.hard_limit_s)
    spec = agent_spec or cfg.agent
    display.message(f"loading agent {spec} ...")
    try:
        agent = make_agent(spec, seed=seed, base_url=base_url, tool_choice=tool_choice, max_llm_usd=max_llm_usd)
    except AgentSpecError as exc:
        _fail(str(exc))
    from .runners import places_for

    try:
        if ray_address is None:
            places = places_for(directory, gpus, workers)
        elif gpus is not None:
            _fail("give --ray or --gpus, not both (a Ray cluster assigns the GPUs)", 2)
        else:
            from .cluster import ClusterError, RayCluster

            try:
                places = RayCluster(ray_address, directory).places(workers)
            except ClusterError as exc:
                _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc), 2)
    session = Session(directory, cfg, agent, display, limits, on_interrupted=on_interrupted, places=places)
    try:
        with display:
            done = run_until(session)
    except KeyboardInterrupt:
        click.echo("aborted: git and the ledger are consistent; an experiment that was running is recorded as "
                   "interrupted. `harness start` continues the run.", err=True)
        sys.exit(130)
    except (AlreadyRunning, SandboxError, LedgerError) as exc:
        _fail(str(exc))
    except (GitCommandError, OSError) as exc:
        _fail(f"{exc}\nThe harness stopped; `harness start` again repairs and continues the run once the cause "
              "(disk space, permissions) is fixed.")
    if session.stopped:
        click.echo(f"stopped as asked: {done} experiments this session. `harness start {directory}` continues.")
    else:
        click.echo(f"done: {done} experiments this session. See `harness log {directory}` and `git log`.")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def pause(directory: Path):
    """Pause the harness in DIRECTORY after its current experiment (writes .harness/pause)."""
    from .control import request_pause

    _running_or_fail(directory)
    request_pause(directory)
    click.echo(f"the harness in {directory} pauses after its current experiment; `harness resume {directory}` "
               "continues.")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def resume(directory: Path):
    """Let a paused harness in DIRECTORY continue (removes .harness/pause)."""
    from .control import request_resume

    if request_resume(directory):
        click.echo(f"the harness in {directory} continues.")
    else:
        click.echo(f"the harness in {directory} was not paused.")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--now", is_flag=True, help="kill the run in flight (recorded as interrupted) instead of letting it finish")
def stop(directory: Path, now: bool):
    """Stop the harness in DIRECTORY after its current experiment (writes .harness/stop)."""
    from .control import request_stop

    _running_or_fail(directory)
    request_stop(directory, now)
    click.echo(f"the harness in {directory} stops " + ("now; the run in flight is recorded as interrupted."
                                                       if now else "after its current experiment."))


def _running_or_fail(directory: Path) -> None:
    from .state import is_running, read_state

    if not is_running(read_state(directory)):
        _fail(f"no harness is running in {directory}.")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--hours", type=float, help="after this many hours run_experiment answers that the run is over")
@click.option("--minutes", type=float, help="after this many minutes run_experiment answers that the run is over")
@click.option("--on-interrupted", type=click.Choice(["record", "rerun"]), default="record", show_default=True,
              help="an experiment a killed harness left running: record it as interrupted, or run it again (once)")
def mcp(directory: Path, hours, minutes, on_interrupted):
    """Serve the sandbox DIRECTORY to an external agent (Claude Code, Codex, ...) as an MCP server
    on stdin/stdout: read_file, list_experiments, show_experiment, training_curve, ask_optimiser, write_notes,
    run_experiment."""
    if hours is not None and minutes is not None:
        _fail("give --hours or --minutes, not both", 2)
    from .config import ConfigError
    from .mcp_server import serve

    duration_s = hours * 3600 if hours is not None else (minutes * 60 if minutes is not None else None)
    try:
        serve(directory, None if duration_s is None else time.time() + duration_s, on_interrupted)
    except ConfigError as exc:
        _fail(str(exc))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def status(directory: Path):
    """Show what the harness in DIRECTORY is doing now, and the best result so far."""
    from .report import print_status

    print_status(directory)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--last", type=int, default=None, help="only the last N experiments")
def log(directory: Path, last):
    """Show results.tsv of DIRECTORY as a table."""
    from .report import print_log

    print_log(directory, last)


@main.command()
@click.argument("number", type=int)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def show(number: int, directory: Path):
    """Show experiment NUMBER of DIRECTORY: its change, decision and evidence, curve, sample and log."""
    from tools.experiments import show_experiment
    from tools.files import ToolError

    from .ledger import Ledger

    _sandbox_or_fail(directory)
    try:
        click.echo(show_experiment(directory, Ledger(directory).records(), number))
    except ToolError as exc:
        _fail(f"{exc} (`harness log {directory}` lists them)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--serve", is_flag=True, help="serve the report over HTTP; the page reloads itself when the ledger changes")
@click.option("--port", type=int, default=8765, show_default=True, help="port of --serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address of --serve (the default is reachable from this machine only: use an ssh tunnel)")
def report(directory: Path, serve: bool, port: int, host: str):
    """Write progress.png and report.html of DIRECTORY (or, with --serve, serve them live)."""
    from .config import ConfigError, load
    from .webreport import build, serve as serve_report

    _sandbox_or_fail(directory)
    try:
        cfg = load(directory)
    except ConfigError as exc:
        _fail(str(exc))
    if not serve:
        path = build(directory, cfg.usd_per_kwh, cfg.checkpoints)
        click.echo(f"wrote {path} and {path.with_name('progress.png')}")
        return

    def ready(server):
        url = f"http://{host}:{server.server_address[1]}/"
        click.echo(f"serving the report of {directory} at {url} (Ctrl-C stops)")
        if host in ("127.0.0.1", "localhost"):
            click.echo(f"on a remote box: ssh -N -L {server.server_address[1]}:127.0.0.1:{server.server_address[1]} "
                       f"USER@BOX, then open {url} here")

    try:
        serve_report(directory, host, port, cfg.usd_per_kwh, cfg.checkpoints, ready=ready)
    except OSError as exc:
        _fail(f"cannot serve on {host}:{port}: {exc}; choose another --port")
    except KeyboardInterrupt:
        click.echo("stopped")


def _sandbox_or_fail(directory: Path) -> None:
    from .config import CONFIG_NAME

    if not (Path(directory) / CONFIG_NAME).exists():
        _fail(f"{directory} is not a harness sandbox (no {CONFIG_NAME}); create one with `harness init DIR`")


@main.group()
def rails():
    """Static checks on train.py files."""


@rails.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the parent file, for rules that judge what changed")
@click.option("--sandbox", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="read the [rails] settings of this sandbox's harness.toml (default: FILE's folder, if it has one)")
def rails_check(file: Path, against: Path | None, sandbox: Path | None):
    """Run every rail on FILE; exit 0 when clean, 1 on violations, 2 on a bad harness.toml."""
    from rails import RailConfig, check_source

    from .config import CONFIG_NAME, ConfigError, load

    folder = sandbox or file.resolve().parent
    settings = {}
    if sandbox or (folder / CONFIG_NAME).exists():
        try:
            settings = load(folder).rail_settings()
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    old = against.read_text(encoding="utf-8") if against else None
    violations = check_source(old, file.read_bytes(), RailConfig(**settings))
    for v in violations:
        click.echo(v.format(str(file)))
    if violations:
        sys.exit(1)
    click.echo(f"ok: {file} passes the rails")


if __name__ == "__main__":
    main()
