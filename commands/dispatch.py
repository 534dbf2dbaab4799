"""From a platform-neutral Command to the handler that serves it, with one permission
check and one way of turning mistakes into polite answers."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.core import Core
from bot.errors import NOTHING_CHANGED, UserError
from commands import admin, alert, help, records, status, tip, triage  # noqa: F401  (they register themselves)
from commands.context import Command, Context
from commands.direct_chat import answer_plain_words, as_command
from commands.registry import REGISTRY, Registry, Role
from commands.text import clean, split_invocation, without_surrogates
from storage.db import CommitOutcomeUnknown
from storage.tips_repo import ConcurrentChange

log = logging.getLogger(__name__)

_ROLE_NEEDED = {
    Role.OFFICER: "Tips are filed in an intake channel or in a direct message with me.",
    Role.ANALYST: "Only the center's analysts and supervisors may do that.",
    Role.SUPERVISOR: "Only a supervisor may do that.",
    Role.ADMIN: "Only an administrator may do that.",
}


class Dispatcher:
    def __init__(self, core: Core, registry: Registry = REGISTRY) -> None:
        self.core = core
        self.registry = registry

    async def handle(self, command: Command) -> bool:
        """Serve one command. Returns False for text that isn't a command (chatter)."""
        command = _storable(command)
        text = clean(command.text)
        ctx = Context(self.core, command, self.registry)
        try:
            if command.is_dm and (as_tip := as_command(text)) is not None:
                text = as_tip
            invocation = split_invocation(text)
            if invocation is None:
                if not command.is_dm or not text.strip():
                    return False  # people talking in a channel: not for the bot
                await answer_plain_words(ctx, text)
                return True
            verb, args = invocation
            spec = self.registry.find(verb)
            if spec is None:
                raise UserError(_unknown_command(ctx, verb, args))
            if not ctx.may(spec.role):
                raise UserError(_ROLE_NEEDED[spec.role])
            await spec.handler(ctx, args)
        except UserError as exc:
            await ctx.answer(str(exc))
        except ConcurrentChange as exc:
            await ctx.answer(f"{exc} changed while you were acting on it; please try again.")
        except CommitOutcomeUnknown:
            log.exception("command's commit failed: %r from %s", command.text[:200], command.actor)
            await ctx.answer(
                "I lost the connection to the database while saving that, so I can't tell "
                f"whether it was saved. Please check with {ctx.spell('status')} before doing "
                "it again."
            )
        except Exception:
            log.exception("command failed: %r from %s", command.text[:200], command.actor)
            await ctx.answer(NOTHING_CHANGED)
        return True


# Arguments this long are worth giving back with the corrected command (a tip typed on a
# phone under "!tips" is gone once sent).
_GIVEN_BACK_WORDS = 3


def _unknown_command(ctx: Context, verb: str, args: str) -> str:
    answer = f"I don't know “{ctx.spell(verb[:30])}”."
    meant = ctx.registry.closest(verb, lambda spec: ctx.may(spec.role))
    if meant is not None:
        answer += f" Did you mean {ctx.spell(meant.name)}?"
        if len(args.split()) > _GIVEN_BACK_WORDS:
            answer += f" To send it again: {ctx.spell(meant.name)} {args}"
            return answer
    return answer + f" {ctx.spell('help')} lists what you can do."


def _storable(command: Command) -> Command:
    """Ids come from platform payloads (JSON, which may carry lone surrogates): make them
    encodable, or the polite refusal itself could not be stored. U+FFFD matches nobody in
    the policy, so nobody can be impersonated this way."""
    fields = {
        name: without_surrogates(value)
        for name in ("actor", "channel", "source_key", "source_ref")
        if isinstance(value := getattr(command, name), str) and value != without_surrogates(value)
    }
    return replace(command, **fields) if fields else command
