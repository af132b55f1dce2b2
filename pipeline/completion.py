"""`newsbeam completion bash|zsh`: a shell completion script, generated from the parser
itself so that it can never disagree with the commands and options newsbeam has."""

from __future__ import annotations

import argparse


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(opt for action in parser._actions for opt in action.option_strings if opt.startswith("--"))


def words(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """What to offer after `newsbeam` (key ""), and after each command (and `feeds list`…)."""
    table = {"": sorted(_subparsers(parser)) + _options(parser)}
    for name, sub in _subparsers(parser).items():
        nested = _subparsers(sub)
        table[name] = sorted(nested) + _options(sub)
        for inner, inner_parser in nested.items():
            table[f"{name} {inner}"] = _options(inner_parser)
    return table


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table = words(parser)
    cases = "\n".join(f'        "{key}") opts="{" ".join(table[key])}" ;;' for key in sorted(table) if key)
    body = f"""_newsbeam() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" key="" opts=""
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) key="${{key:+$key }}${{COMP_WORDS[i]}}" ;; esac
    done
    case "$key" in
        "") opts="{" ".join(table[""])}" ;;
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
}}
complete -o filenames -F _newsbeam newsbeam
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body
