"""What a command handler gets: the core, who asked, and where to answer."""

from __future__ import annotations

from dataclasses import dataclass

from bot.addresses import spell
from bot.core import Core
from bot.messages import Message
from bot.replies import ReplyTo, reply
from commands.registry import Registry, Role


@dataclass(frozen=True)
class Command:
    """A command as an adapter hands it over, the same from every platform."""

    actor: str
    channel: str
    text: str
    is_dm: bool = False
    # Set by adapters whose platform may deliver the same request twice.
    source_key: str | None = None
    source_ref: str | None = None
    # A tip from a platform's form (Slack's /tip form): its boxes, already separated, so
    # no text in them is read for more fields ("seen twice, time: 23:40" stays details).
    # ``text`` still holds the tip as a line, for logs and for giving it back.
    form: tuple[tuple[str, str], ...] | None = None


@dataclass
class Context:
    core: Core
    command: Command
    registry: Registry

    @property
    def actor(self) -> str:
        return self.command.actor

    @property
    def reply_to(self) -> ReplyTo:
        return ReplyTo(
            actor=self.command.actor,
            channel=self.command.channel,
            is_dm=self.command.is_dm,
            source_ref=self.command.source_ref,
        )

    def role(self) -> Role:
        policy = self.core.policy
        if policy.is_admin(self.actor):
            return Role.ADMIN
        if policy.is_supervisor(self.actor):
            return Role.SUPERVISOR
        if policy.is_analyst(self.actor):
            return Role.ANALYST
        if policy.may_file(self.actor, self.command.channel, self.command.is_dm):
            return Role.OFFICER
        return Role.ANYONE

    def may(self, needed: Role) -> bool:
        """Admins are not analysts by default: roles are checked as the policy lists them."""
        policy = self.core.policy
        if needed is Role.ANYONE:
            return True
        if needed is Role.OFFICER:
            return policy.may_file(self.actor, self.command.channel, self.command.is_dm)
        if needed is Role.ANALYST:
            return policy.is_analyst(self.actor)
        if needed is Role.SUPERVISOR:
            return policy.is_supervisor(self.actor)
        return policy.is_admin(self.actor)

    def spell(self, verb: str) -> str:
        """How this person types a command on their platform."""
        return spell(self.actor, verb)

    async def answer(self, message: Message | str) -> None:
        """Reply in its own transaction (for commands that change nothing)."""
        async with self.core.transaction() as conn:
            await reply(conn, self.reply_to, message, now=self.core.clock.now())
