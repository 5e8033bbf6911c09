"""What model calls cost: list prices in US dollars per million tokens, for the usage page's estimate.

Edit PRICES when a provider changes its prices or you use another model; AS_OF says when they were
last checked. A model is found by its exact name, else by the longest name in the table it starts with
(`gpt-5-mini-2025-08-07` is priced as `gpt-5-mini`). A model that is not here (a local one, a new one) has
no estimate, and the page says so rather than guess. Cached-input discounts and batch prices are not
modelled: the estimate is an upper bound of what the provider bills.
"""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2026-11"


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens


#: (provider, model name or prefix) -> price
PRICES: dict[tuple[str, str], Price] = {
    ("openai", "gpt-5"): Price(1.25, 10.00),
    ("openai", "gpt-5-mini"): Price(0.25, 2.00),
    ("openai", "gpt-5-nano"): Price(0.05, 0.40),
    ("openai", "gpt-4.1"): Price(2.00, 8.00),
    ("openai", "gpt-4.1-mini"): Price(0.40, 1.60),
    ("openai", "gpt-4.1-nano"): Price(0.10, 0.40),
    ("openai", "gpt-4o"): Price(2.50, 10.00),
    ("openai", "gpt-4o-mini"): Price(0.15, 0.60),
    ("openai", "text-embedding-3-small"): Price(0.02, 0.0),
    ("openai", "text-embedding-3-large"): Price(0.13, 0.0),
    ("anthropic", "claude-opus-4-1"): Price(15.00, 75.00),
    ("anthropic", "claude-opus-4-5"): Price(5.00, 25.00),
    ("anthropic", "claude-sonnet-4"): Price(3.00, 15.00),
    ("anthropic", "claude-haiku-4-5"): Price(1.00, 5.00),
    ("anthropic", "claude-3-5-haiku"): Price(0.80, 4.00),
}


def price_of(provider: str, model: str) -> Price | None:
    """The price of `model` at `provider`, or None when the table does not know it."""
    exact = PRICES.get((provider, model))
    if exact is not None:
        return exact
    known = [name for (where, name) in PRICES if where == provider and model.startswith(name)]
    return PRICES[(provider, max(known, key=len))] if known else None


def cost(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated US dollars, or None for a model without a known price."""
    price = price_of(provider, model)
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000
