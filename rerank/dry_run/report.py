"""A dry run's report: a table per query (or per experiment variant), totals, price and cache."""

from __future__ import annotations

import json
from typing import Sequence

from ..evaluation.tables import format_table
from .plan import DRY_JUDGES, Cost, Plan, Price


def format_plan(plan: Plan, price: Price | None = None) -> str:
    """One run's dry run: a row per query and the total, then the range over judges, the price,
    the cache and what the counts assume."""
    header = ["qid", "calls", "rounds", "prompt tok", "answer tok", "cached", "new prompt tok"]
    if price is not None:
        header.append("new $")
    rows = [_row(qid, cost, price) for qid, cost in plan.queries]
    rows.append(_row("total", plan.total, price))
    lines = [f"dry run of {plan.name}: {plan.strategy}, model {plan.model}, {len(plan.queries)} queries",
             format_table(header, rows), *_summary(plan, price)]
    return "\n".join(lines) + "\n"


def format_plans(plans: Sequence[Plan], price: Price | None = None) -> str:
    """Several runs (an experiment's variants): a row per run and their total."""
    header = ["variant", "strategy", "calls", "rounds (max)", "prompt tok", "answer tok", "cached", "new calls",
              "new prompt tok"]
    if price is not None:
        header += ["$", "new $"]
    rows = []
    for plan in plans:
        total = plan.total
        row = [plan.name, plan.strategy, f"{total.calls:,}", f"{total.rounds:,} ({plan.max_rounds})",
               f"{total.prompt_tokens:,}", f"{total.answer_tokens:,}", f"{total.cached_calls:,}",
               f"{total.new_calls:,}", f"{total.new_prompt_tokens:,}"]
        if price is not None:
            row += [_dollars(price.of(total.prompt_tokens, total.answer_tokens)),
                    _dollars(price.of(total.new_prompt_tokens, total.new_answer_tokens))]
        rows.append(row)
    total = sum((plan.total for plan in plans), Cost())
    row = ["total", "", f"{total.calls:,}", f"{total.rounds:,}", f"{total.prompt_tokens:,}",
           f"{total.answer_tokens:,}", f"{total.cached_calls:,}", f"{total.new_calls:,}", f"{total.new_prompt_tokens:,}"]
    if price is not None:
        row += [_dollars(price.of(total.prompt_tokens, total.answer_tokens)),
                _dollars(price.of(total.new_prompt_tokens, total.new_answer_tokens))]
    rows.append(row)
    queries = len(plans[0].queries) if plans else 0
    lines = [f"dry run of {len(plans)} variants over {queries} queries", format_table(header, rows)]
    varying = [plan.name for plan in plans if plan.varies]
    if varying:
        lines.append("calls depend on the answers in " + ", ".join(varying) + ": identity judge shown; "
                     "--json gives the perfect and reverse judges' figures")
    if price is not None:
        lines.append(_price_basis(price))
    if plans:
        lines.append(_cache_line(plans[0], total))
        lines.append(f"tokens counted with {plans[0].tokenizer}")
    lines += [f"note: {note}" for note in dict.fromkeys(n for plan in plans for n in plan.notes)]
    lines.append("no LLM was called and no file was written")
    return "\n".join(lines) + "\n"


def plans_json(command: str, plans: Sequence[Plan], price: Price | None = None) -> str:
    """The dry run as JSON: ``{"command": ..., "dry_run": true, "runs": [plan, ...]}``."""
    return json.dumps({"command": command, "dry_run": True, "runs": [plan.as_dict(price) for plan in plans]},
                      indent=2) + "\n"


def _row(qid: str, cost: Cost, price: Price | None) -> list[str]:
    row = [qid, f"{cost.calls:,}", f"{cost.rounds:,}", f"{cost.prompt_tokens:,}", f"{cost.answer_tokens:,}",
           f"{cost.cached_calls:,}", f"{cost.new_prompt_tokens:,}"]
    if price is not None:
        row.append(_dollars(price.of(cost.new_prompt_tokens, cost.new_answer_tokens)))
    return row


def _summary(plan: Plan, price: Price | None) -> list[str]:
    total, queries = plan.total, max(len(plan.queries), 1)
    others = [plan.judges[name] for name in DRY_JUDGES[1:]]
    lines = [f"per query: {total.calls / queries:,.1f} calls, {total.rounds / queries:,.1f} rounds (at most "
             f"{plan.max_rounds}), {total.prompt_tokens / queries:,.0f} prompt tokens; answers: "
             f"{total.answer_tokens:,} tokens expected, at most {total.max_answer_tokens:,} (the calls' limits)"]
    judged = "; ".join(f"{name}: {cost.calls:,} calls, {cost.rounds:,} rounds, {cost.prompt_tokens:,} prompt tokens"
                       for name, cost in zip(DRY_JUDGES[1:], others))
    if plan.varies:
        calls = [cost.calls for cost in plan.judges.values()]
        lines.append(f"calls depend on the answers: {min(calls):,} to {max(calls):,} calls over the identity "
                     f"(shown), perfect and reverse judges ({judged})")
    else:
        lines.append(f"calls and rounds are the same under the identity (shown), perfect and reverse judges "
                     f"({judged})")
    if price is not None:
        lines.append(f"{_price_basis(price)}: {_dollars(price.of(total.prompt_tokens, total.answer_tokens))} "
                     f"expected (at most {_dollars(price.of(total.prompt_tokens, total.max_answer_tokens))}), "
                     f"{_dollars(price.of(total.new_prompt_tokens, total.new_answer_tokens))} for the calls not "
                     "in the cache")
    lines.append(_cache_line(plan, total))
    lines.append(f"tokens counted with {plan.tokenizer}" + ("" if plan.exact else " (an estimate of the provider's count)"))
    lines += [f"note: {note}" for note in plan.notes]
    lines.append("no LLM was called and no file was written")
    return lines


def _cache_line(plan: Plan, total: Cost) -> str:
    if plan.cache is None:
        where = "no call cache (--no-cache)"
    elif plan.cache_entries == 0:
        where = f"call cache {plan.cache}: empty or not there yet"
    else:
        where = f"call cache {plan.cache}: {plan.cache_entries:,} entries"
    repeated = f", {total.repeated_calls:,} paid by an earlier variant" if total.repeated_calls else ""
    return (f"{where}; {total.cached_calls:,} of {total.calls:,} calls cached{repeated}; to pay: "
            f"{total.new_calls:,} calls, {total.new_prompt_tokens:,} prompt and {total.new_answer_tokens:,} "
            "answer tokens")


def _price_basis(price: Price) -> str:
    basis = f"price at ${price.prompt:g} / ${price.completion:g} per million prompt / completion tokens"
    return basis + (f", x{price.factor:g} (batch API)" if price.factor != 1 else "")


def _dollars(value: float) -> str:
    return f"${value:,.4f}"
