"""The `agent-sandbox` command. Errors become exit codes here, and only here."""

from __future__ import annotations

import sys

import click

from ..errors import SandboxError
from ..signals import Terminated

# Imported under other names: `cli.verify` etc. stay the submodules.
from .audit import audit as audit_command
from .build import build as build_command
from .compose import compose as compose_group
from .demo import demo as demo_command
from .doctor import doctor as doctor_command
from .lock import lock as lock_command
from .pin import pin as pin_command
from .policy import policy as policy_group
from .run import rm as rm_command
from .run import run as run_command
from .sbom import sbom as sbom_command
from .spawn import attach as attach_command
from .spawn import list_agents
from .spawn import logs as logs_command
from .spawn import spawn as spawn_command
from .spawn import stop as stop_command
from .verify import verify as verify_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="agent-sandbox")
def cli() -> None:
    """Sandboxes for AI coding agents: a profile (one of four tiers, or your own) compiled into a policy for every
    enforcement layer."""


cli.add_command(policy_group)
cli.add_command(build_command)
cli.add_command(verify_command)
cli.add_command(run_command)
cli.add_command(rm_command)
cli.add_command(spawn_command)
cli.add_command(list_agents)
cli.add_command(logs_command)
cli.add_command(attach_command)
cli.add_command(stop_command)
cli.add_command(compose_group)
cli.add_command(demo_command)
cli.add_command(pin_command)
cli.add_command(lock_command)
cli.add_command(sbom_command)
cli.add_command(doctor_command)
cli.add_command(audit_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line on stderr for a user error, exit 2 for bad input, no traceback."""
    try:
        # Without standalone mode click returns a command's `Exit(code)` rather than raising it.
        code = cli.main(args=argv, prog_name="agent-sandbox", standalone_mode=False)
    except SandboxError as exc:
        click.echo(f"agent-sandbox: {exc}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("agent-sandbox: interrupted", err=True)
        return 130
    except Terminated:
        click.echo("agent-sandbox: terminated (SIGTERM); what it started is removed", err=True)
        return 143
    except click.ClickException as exc:
        click.echo(f"agent-sandbox: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
