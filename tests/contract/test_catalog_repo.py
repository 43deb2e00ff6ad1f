"""The catalog's model settings that price a request and shape what goes upstream, kept by both repositories."""

from __future__ import annotations

from chalicelib.core.domain import ImagePrice, ModelEntry, ModelKind, Prices, Route


def test_a_model_keeps_its_cap_field_pass_through_fields_and_image_prices(repos):
    chat = ModelEntry(name="o", kind=ModelKind.CHAT, prices=Prices(input_per_1m=1, output_per_1m=2),
                      routes=(Route("openai", "o3"),), max_output_tokens=100_000, cap_field="max_completion_tokens",
                      pass_through=("service_tier", "reasoning_effort"))
    image = ModelEntry(name="pics", kind=ModelKind.IMAGE,
                       prices=Prices(per_image=40_000_000, image_prices=(ImagePrice("hd", "1024x1024", 80_000_000),
                                                                         ImagePrice("hd", "1792x1024", 120_000_000))),
                       routes=(Route("openai", "dall-e-3"),))
    repos.catalog.put_model(chat)
    repos.catalog.put_model(image)
    _, models, _ = repos.catalog.load()
    assert sorted(models, key=lambda m: m.name) == [chat, image]
