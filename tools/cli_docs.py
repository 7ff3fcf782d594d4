"""Generate man pages and shell completions from the ``exithand`` argparse definitions.

Build-time only (``setup.py`` runs it while building the sdist/wheel; nothing here is imported at
run time): ``python3 tools/cli_docs.py OUTDIR`` writes

* ``OUTDIR/man/exithand.1`` and ``OUTDIR/man/exithand-COMMAND.1`` (one per subcommand, as git
  and systemd do), in plain man(7) roff;
* ``OUTDIR/bash/exithand`` (bash-completion), ``OUTDIR/zsh/_exithand`` and
  ``OUTDIR/fish/exithand.fish``: the names each shell looks up in its completion directory.

Everything comes from :func:`exithand.cli.build_parser`: an option added there appears in the
man page and the completions at the next build, with no list to keep in sync.  The walk uses
argparse's documented objects plus ``_actions``/``_SubParsersAction.choices``, which every
Python from 3.9 to 3.13 has (as ``argparse-manpage`` and ``shtab`` rely on too).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent


def load_parser() -> tuple[argparse.ArgumentParser, str]:
    """The CLI's parser and version, from this checkout's ``src`` (not an installed copy)."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from exithand import __version__
        from exithand.cli import build_parser
    finally:
        sys.path.pop(0)
    return build_parser(), __version__


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser,
                                                                     str]]:
    """``{name: (subparser, one-line help)}`` in the order they were added."""
    out: dict[str, tuple[argparse.ArgumentParser, str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = (sub, helps.get(name, ""))
    return out


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Optional arguments (with ``-x``/``--xx`` strings), help suppressed ones left out."""
    return [a for a in parser._actions
            if a.option_strings and a.help != argparse.SUPPRESS]


def positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def takes_value(a: argparse.Action) -> bool:
    return a.nargs != 0


def help_text(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    """The option's help with ``%(default)s`` and friends expanded, as ``--help`` shows it."""
    if not a.help:
        return ""
    fmt = parser._get_formatter()
    return " ".join(fmt._expand_help(a).split())


def metavar(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    fmt = parser._get_formatter()
    return fmt._format_args(a, fmt._get_default_metavar_for_optional(a)) if takes_value(a) else ""


# ----- man pages -------------------------------------------------------------------------------


def roff(text: str) -> str:
    """Escape text for roff: backslashes, leading dots/quotes, and ``-`` as a real minus."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln
                     for ln in text.split("\n"))


def _para(text: str) -> str:
    """Free text (description, epilog): blank lines start paragraphs; indented lines are kept
    as they are (examples, tables)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.split("\n")
        if any(ln.startswith("  ") for ln in lines[1:]) or lines[0].startswith("  "):
            out += [".PP", ".nf", roff("\n".join(lines)), ".fi"]
        else:
            out += [".PP", roff(" ".join(ln.strip() for ln in lines))]
    return "\n".join(out)


def _option_item(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    mv = metavar(parser, a)
    names = ", ".join(f"\\fB{roff(s)}\\fR" + (f" \\fI{roff(mv)}\\fR" if mv else "")
                      for s in a.option_strings)
    line = help_text(parser, a)
    if a.choices is not None:
        line += f" (one of: {', '.join(str(c) for c in a.choices)})"
    return f".TP\n{names}\n{roff(line)}"


def man_page(parser: argparse.ArgumentParser, name: str, summary: str, version: str,
             date: str, see_also: list[str]) -> str:
    usage = " ".join(parser.format_usage().split()[1:])  # drop "usage:"
    title = name.upper()
    out = [
        f'.TH "{title}" "1" "{date}" "exithand {version}" "User Commands"',
        ".SH NAME",
        f"{roff(name)} \\- {roff(summary)}",
        ".SH SYNOPSIS",
        ".nf",
        roff(usage),
        ".fi",
    ]
    if parser.description:
        out += [".SH DESCRIPTION", _para(parser.description)]
    pos = positionals(parser)
    if pos:
        out.append(".SH ARGUMENTS")
        for a in pos:
            out.append(f".TP\n\\fI{roff(str(a.metavar or a.dest))}\\fR\n"
                       f"{roff(help_text(parser, a))}")
    out.append(".SH OPTIONS")
    for a in options(parser):
        out.append(_option_item(parser, a))
    if parser.epilog:
        # an "exit status:" block (every command's epilog has one) becomes its own section
        m = re.search(r"^exit status[^\n]*:\n", parser.epilog, re.M | re.I)
        notes, codes = ((parser.epilog[:m.start()], parser.epilog[m.end():]) if m
                        else (parser.epilog, ""))
        if notes.strip():
            out += [".SH NOTES", _para(notes)]
        if codes.strip():
            out += [".SH EXIT STATUS", _para(codes)]
    out += [".SH SEE ALSO", ",\n".join(f"\\fB{roff(s)}\\fR(1)" for s in see_also)]
    return "\n".join(out) + "\n"


def man_pages(parser: argparse.ArgumentParser, version: str,
              date: Optional[str] = None) -> dict[str, str]:
    """``{file name: roff text}``: ``exithand.1`` and ``exithand-COMMAND.1`` for each command.

    ``date`` defaults to ``SOURCE_DATE_EPOCH`` (reproducible builds), else today.
    """
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
                if epoch else datetime.datetime.now(datetime.timezone.utc))
        date = when.strftime("%Y-%m-%d")
    subs = subcommands(parser)
    pages = {}
    top = man_page(parser, "exithand",
                   "race-free waits on the death of any Linux process", version, date,
                   [f"exithand-{n}" for n in subs] + ["waitpid", "pidwait", "kill"])
    top = top.replace(".SH SEE ALSO", ".SH COMMANDS\n" + "\n".join(
        f".TP\n\\fBexithand {roff(n)}\\fR\n{roff(h)}; see \\fBexithand\\-{roff(n)}\\fR(1)."
        for n, (_p, h) in subs.items()) + "\n.SH SEE ALSO")
    pages["exithand.1"] = top
    for n, (sp, h) in subs.items():
        pages[f"exithand-{n}.1"] = man_page(sp, f"exithand-{n}", h, version, date,
                                            ["exithand"] + [f"exithand-{o}" for o in subs
                                                            if o != n])
    return pages


# ----- completions -----------------------------------------------------------------------------


def _is_path(a: argparse.Action) -> bool:
    mv = str(a.metavar or a.dest).upper()
    return any(w in mv for w in ("PATH", "DIR", "MOUNTPOINT", "FILE"))


def bash_completion(parser: argparse.ArgumentParser) -> str:
    subs = subcommands(parser)
    lines = [
        "# bash completion for exithand (generated from its argparse definitions)",
        "_exithand() {",
        "    local cur prev cmd i",
        "    cur=${COMP_WORDS[COMP_CWORD]}",
        "    prev=${COMP_WORDS[COMP_CWORD-1]}",
        "    cmd=",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        "        case ${COMP_WORDS[i]} in",
        "            -*) ;;",
        f"            {'|'.join(subs)}) cmd=${{COMP_WORDS[i]}}; break ;;",
        "        esac",
        "    done",
        "    case $cmd in",
        "        '')",
        f"            COMPREPLY=($(compgen -W '{' '.join(subs)} "
        f"{' '.join(s for a in options(parser) for s in a.option_strings)}' -- \"$cur\"))",
        "            return ;;",
    ]
    for n, (sp, _h) in subs.items():
        opts = options(sp)
        lines.append(f"        {n})")
        lines.append("            case $prev in")
        for a in opts:
            if not takes_value(a):
                continue
            pat = "|".join(a.option_strings)
            if a.choices is not None:
                words = " ".join(str(c) for c in a.choices)
                lines.append(f"                {pat}) COMPREPLY=($(compgen -W '{words}' -- "
                             "\"$cur\")); return ;;")
            elif _is_path(a):
                lines.append(f"                {pat}) COMPREPLY=($(compgen -f -- \"$cur\")); "
                             "return ;;")
            else:
                lines.append(f"                {pat}) return ;;")
        lines.append("            esac")
        words = " ".join(s for a in opts for s in a.option_strings)
        lines.append(f"            if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W '{words}' "
                     "-- \"$cur\")); return; fi")
        if any(_is_path(a) for a in positionals(sp)):
            lines.append("            COMPREPLY=($(compgen -d -- \"$cur\")) ;;")
        else:  # targets are pids: offer the running ones
            lines.append("            COMPREPLY=($(compgen -W \"$(ls /proc 2>/dev/null | "
                         "grep -E '^[0-9]+$')\" -- \"$cur\")) ;;")
    lines += ["    esac", "}", "complete -F _exithand exithand", ""]
    return "\n".join(lines)


def _zsh_quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "'\\''").replace("[", "\\[").replace(
        "]", "\\]").replace(":", "\\:")


def _zsh_specs(sp: argparse.ArgumentParser) -> list[str]:
    specs = []
    for a in options(sp):
        desc = _zsh_quote(help_text(sp, a)[:80])
        if a.choices is not None:
            action = f":value:({' '.join(str(c) for c in a.choices)})"
        elif takes_value(a):
            action = ":path:_files" if _is_path(a) else f":{_zsh_quote(metavar(sp, a))}: "
        else:
            action = ""
        if len(a.option_strings) > 1:
            excl = " ".join(a.option_strings)
            names = "{" + ",".join(a.option_strings) + "}"
            specs.append(f"'({excl})'{names}'[{desc}]{action}'")
        else:
            specs.append(f"'{a.option_strings[0]}[{desc}]{action}'")
    for a in positionals(sp):
        what = "_files -/" if _is_path(a) else "_pids"
        rep = "*" if a.nargs in ("+", "*") else ""
        specs.append(f"'{rep}:{_zsh_quote(str(a.metavar or a.dest))}:{what}'")
    return specs


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    subs = subcommands(parser)
    lines = ["#compdef exithand", "# zsh completion for exithand (generated from argparse)", "",
             "_exithand() {", "    local curcontext=$curcontext state line",
             "    typeset -A opt_args", "    _arguments -C \\"]
    for spec in _zsh_specs(parser):
        lines.append(f"        {spec} \\")
    lines += ["        '1:command:->cmds' \\", "        '*::arg:->args'", "    case $state in",
              "        cmds)", "            local -a cmds", "            cmds=("]
    for n, (_sp, h) in subs.items():
        lines.append(f"                '{n}:{_zsh_quote(h)}'")
    lines += ["            )", "            _describe -t commands 'exithand command' cmds ;;",
              "        args)", "            case $line[1] in"]
    for n, (sp, _h) in subs.items():
        lines.append(f"                {n}) _arguments \\")
        specs = _zsh_specs(sp)
        for i, spec in enumerate(specs):
            lines.append(f"                    {spec}" + (" \\" if i < len(specs) - 1 else " ;;"))
        if not specs:
            lines[-1] = lines[-1].rstrip(" \\") + " ;;"
    lines += ["            esac ;;", "    esac", "}", "", '_exithand "$@"', ""]
    return "\n".join(lines)


def _fish_quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_completion(parser: argparse.ArgumentParser) -> str:
    subs = subcommands(parser)
    names = " ".join(subs)
    lines = ["# fish completion for exithand (generated from its argparse definitions)",
             "complete -c exithand -f"]
    for n, (_sp, h) in subs.items():
        lines.append(f"complete -c exithand -n 'not __fish_seen_subcommand_from {names}' "
                     f"-a {n} -d {_fish_quote(h)}")
    for n, (sp, _h) in subs.items():
        for a in options(sp):
            parts = [f"complete -c exithand -n '__fish_seen_subcommand_from {n}'"]
            for s in a.option_strings:
                parts.append(f"-l {s[2:]}" if s.startswith("--") else f"-s {s[1:]}")
            if a.choices is not None:
                parts.append("-x -a " + _fish_quote(" ".join(str(c) for c in a.choices)))
            elif takes_value(a):
                parts.append("-r -F" if _is_path(a) else "-x")
            parts.append("-d " + _fish_quote(help_text(sp, a)[:80]))
            lines.append(" ".join(parts))
        if any(_is_path(a) for a in positionals(sp)):
            lines.append(f"complete -c exithand -n '__fish_seen_subcommand_from {n}' -F")
        else:
            lines.append(f"complete -c exithand -n '__fish_seen_subcommand_from {n}' "
                         "-a '(__fish_complete_pids)'")
    for a in options(parser):
        parts = ["complete -c exithand -n __fish_use_subcommand"]
        for s in a.option_strings:
            parts.append(f"-l {s[2:]}" if s.startswith("--") else f"-s {s[1:]}")
        parts.append("-d " + _fish_quote(help_text(parser, a)))
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def generate(outdir: Path) -> list[Path]:
    """Write every man page and completion under ``outdir``; return the files written."""
    parser, version = load_parser()
    written = []
    files = {f"man/{name}": text for name, text in man_pages(parser, version).items()}
    files["bash/exithand"] = bash_completion(parser)
    files["zsh/_exithand"] = zsh_completion(parser)
    files["fish/exithand.fish"] = fish_completion(parser)
    for rel, text in files.items():
        p = outdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)
    return written


#: where each generated file is installed, relative to the installation prefix (``sys.prefix``
#: of a venv, ``/usr/local``, ``~/.local``): the places man(1), bash-completion (which also
#: looks in ``../share/bash-completion/completions`` next to each PATH directory), zsh
#: (``site-functions``) and fish (``vendor_completions.d``) search.
INSTALL_DIRS = {
    "man": "share/man/man1",
    "bash": "share/bash-completion/completions",
    "zsh": "share/zsh/site-functions",
    "fish": "share/fish/vendor_completions.d",
}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tools/cli_docs.py OUTDIR")
    for path in generate(Path(sys.argv[1])):
        print(path)
