"""!help — generated from the command specs, filtered by what the speaker may do."""

from __future__ import annotations

from bot.messages import Message
from commands.context import Context
from commands.registry import CommandSpec, Role, command


@command("help", role=Role.ANYONE, summary="What you can do here.", aliases=("commands",))
async def help_(ctx: Context, args: str) -> None:
    await ctx.answer(help_message(ctx, args.strip().lstrip("!/").lower()))


def help_message(ctx: Context, topic: str = "") -> Message:
    specs = [s for s in ctx.registry.all() if ctx.may(s.role)]
    lines: list[str] = []
    if topic:
        spec = ctx.registry.find(topic)
        if spec is not None and spec in specs:
            lines = [f"{ctx.spell(spec.name)} {spec.usage}".rstrip(), spec.summary]
            lines += [
                f"Example: {ctx.spell(e.split(' ', 1)[0])} {e.split(' ', 1)[1]}"
                for e in spec.examples
            ]
            return Message(header=f"Help: {spec.name}", text="\n".join(lines))
        lines.append(_not_yours(ctx, topic, spec))
    role = ctx.role()
    lines += [
        f"{ctx.spell(s.name)} {s.usage}".rstrip() + f" — {_first_sentence(s.summary)}"
        for s in specs
    ]
    lines.append(f"More on one command: {ctx.spell('help')} <command>")
    return Message(header=f"Commands for you ({_role_name(role)})", text="\n".join(lines))


def _not_yours(ctx: Context, topic: str, spec: CommandSpec | None) -> str:
    """Why the list follows instead of the help asked for."""
    if spec is not None:
        return f"{spec.name} is for {_WHO_MAY[spec.role]}; here is what you can do."
    answer = f"There is no command {topic[:30]}."
    meant = ctx.registry.closest(topic, lambda s: ctx.may(s.role))
    if meant is not None:
        answer += f" Did you mean {meant.name}? ({ctx.spell('help')} {meant.name})"
    return answer


_WHO_MAY = {
    Role.OFFICER: "officers, in an intake channel or a direct message with me",
    Role.ANALYST: "analysts and supervisors",
    Role.SUPERVISOR: "supervisors",
    Role.ADMIN: "administrators",
}


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def _role_name(role: Role) -> str:
    return {
        Role.ANYONE: "partner / guest",
        Role.OFFICER: "officer",
        Role.ANALYST: "analyst",
        Role.SUPERVISOR: "supervisor",
        Role.ADMIN: "admin",
    }[role]
