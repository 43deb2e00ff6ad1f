"""The catalog's model settings that price a request and shape what goes upstream, kept by both repositories."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.core.domain import Channel, ImagePrice, ModelEntry, ModelKind, Prices, Route


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


def test_a_model_keeps_its_fallbacks_and_its_routes_priorities_and_weights(repos):
    model = ModelEntry(name="chat", kind=ModelKind.CHAT, prices=Prices(input_per_1m=1, output_per_1m=2),
                       routes=(Route("main", "m", priority=10, weight=3), Route("spare", "s")),
                       max_output_tokens=1000, fallbacks=("backup", "last-resort"))
    repos.catalog.put_model(model)
    _, models, _ = repos.catalog.load()
    assert models == [model]


def test_a_channel_keeps_its_extra_headers_and_its_forced_state(repos):
    channel = Channel("edge", "https://edge.example/v1", "sk-edge-key-0123456789",
                      extra_headers=(("X-Org", "acme"), ("X-Region", "eu")))
    repos.catalog.put_channel(channel)
    assert repos.catalog.set_channel_state("edge", "open") is True
    assert repos.catalog.set_channel_state("nowhere", "open") is False
    channels, _, _ = repos.catalog.load()
    assert channels == [replace(channel, state="open")]
    assert "acme" not in repr(channels[0])
    # Adding the channel again keeps what it is given, the state included.
    repos.catalog.put_channel(channel)
    assert repos.catalog.load()[0] == [channel]
