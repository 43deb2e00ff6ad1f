import pytest

from chalicelib.admin.operations import Admin, ModelInput
from chalicelib.billing.wallet import Wallet
from chalicelib.catalog.catalog import BUILTIN_MODELS, DEFAULT_MAX_OUTPUT_TOKENS, Catalog
from chalicelib.core.domain import Channel, ModelEntry, ModelKind
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import usd_to_units
from chalicelib.core.validation import parse
from chalicelib.keys.auth import KeyHasher
from chalicelib.keys.manage import KeyManager
from tests.sqlite_store import store_in
from tests.unit.conftest import CHAT, World
from tests.unit.relay_requests import chat

GUIDE = {"deepseek-chat", "deepseek-reasoner", "qwen-plus", "qwen-max", "kimi-k2", "doubao-pro", "glm-4", "gpt-4o",
         "claude-sonnet", "text-embedding-3-small", "dall-e-3"}


def routable(catalog: Catalog) -> set[str]:
    return {model.name for model in catalog.routable_models()}


def test_the_catalog_holds_the_guides_models_with_prices_and_use_cases():
    assert set(BUILTIN_MODELS) == GUIDE
    for model in BUILTIN_MODELS.values():
        assert model.use_case and model.routes
        assert model.prices.input_per_1m or model.prices.per_image


def test_nothing_is_routable_without_a_provider_key_or_channel(tmp_path):
    assert routable(Catalog(store_in(tmp_path).catalog, {}, ttl_s=0)) == set()


def test_a_providers_key_in_the_environment_makes_its_models_routable(tmp_path):
    catalog = Catalog(store_in(tmp_path).catalog, {"deepseek": "sk-upstream", "openai": "sk-openai"}, ttl_s=0)
    assert routable(catalog) == {"deepseek-chat", "deepseek-reasoner", "gpt-4o", "text-embedding-3-small",
                                 "dall-e-3"}
    [route] = catalog.routes(BUILTIN_MODELS["deepseek-chat"])
    assert route.channel.base_url == "https://api.deepseek.com/v1" and route.channel.api_key == "sk-upstream"


def test_a_channel_named_after_a_provider_serves_its_models(tmp_path):
    repo = store_in(tmp_path).catalog
    repo.put_channel(Channel("qwen", "https://proxy.example.com/v1", "k"))
    catalog = Catalog(repo, {"anthropic": "sk-ant"}, ttl_s=0)
    assert routable(catalog) == {"qwen-plus", "qwen-max", "claude-sonnet"}
    [route] = catalog.routes(catalog.model("claude-sonnet"))
    assert route.channel == Channel("anthropic", "https://api.anthropic.com/v1", "sk-ant", kind="anthropic")
    assert route.upstream_model == "claude-sonnet-4-5"
    assert catalog.model("claude-sonnet").prices.cache_write_rate == 3_750_000_000  # $3.75 per 1M


def test_the_gateway_has_an_adapter_for_anthropic_channels(tmp_path):
    from chalicelib.config import Settings
    from chalicelib.deps import build_gateway

    gateway = build_gateway(Settings(storage="sqlite", data_dir=tmp_path, ANTHROPIC_API_KEY="sk-ant"))
    why = {model.name: reason for model, reason in gateway.catalog.availability()}
    assert why["claude-sonnet"] is None


def test_each_model_that_is_not_routable_says_why_in_one_line(tmp_path):
    repo = store_in(tmp_path).catalog
    repo.put_channel(Channel("qwen", "https://proxy.example.com/v1", "k"))
    catalog = Catalog(repo, {"anthropic": "sk-ant"}, ttl_s=0, channel_kinds=frozenset({"openai"}))
    why = {model.name: reason for model, reason in catalog.availability()}
    assert set(why) == GUIDE
    assert why["qwen-plus"] is None and why["qwen-max"] is None
    assert why["deepseek-chat"] == "no channel `deepseek` (set DEEPSEEK_API_KEY or add the channel)"
    assert why["claude-sonnet"] == "channel `anthropic` speaks `anthropic`, which has no adapter yet"
    assert all("\n" not in reason for reason in why.values() if reason)


def test_the_catalog_is_reread_once_its_lifetime_passes(tmp_path):
    repo = store_in(tmp_path).catalog
    now = [0.0]
    catalog = Catalog(repo, {}, ttl_s=5, clock=lambda: now[0])
    assert routable(catalog) == set()
    repo.put_channel(Channel("glm", "https://open.bigmodel.cn/api/paas/v4", "k"))
    assert routable(catalog) == set()
    now[0] = 5.0
    assert routable(catalog) == {"glm-4"}


# Operator models (the admin's `model add`), relayed over the World's storage.

def add_model(admin: Admin, body: dict) -> ModelEntry:
    """The admin's `model add`, as the API parses it."""
    return admin.add_model(parse(ModelInput, body))


def admin_for(world: World) -> Admin:
    return Admin(token="t", accounts=world.accounts, wallets=world.wallets,
                 catalog_repo=world.catalog_repo, catalog=world.catalog,
                 key_manager=KeyManager(world.keys, world.catalog, KeyHasher(), now_ms=lambda: world.time_ms),
                 wallet=Wallet(world.wallets, now_ms=lambda: world.time_ms), now_ms=lambda: world.time_ms)


def test_an_operator_chat_model_without_a_max_output_gets_the_default_and_sends_it(world):
    model = add_model(admin_for(world), {"name": "mine", "channel": "primary", "input_per_1m": "1",
                                        "output_per_1m": "2"})
    assert model.max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS == 4096
    assert model.cap_field == "max_tokens" and model.pass_through == ()
    world.fund("1")
    chat(world, model="mine")
    assert world.sent_json()["max_tokens"] == 4096


def test_a_stored_chat_model_without_a_max_output_is_read_with_the_default(world):
    world.catalog_repo.put_model(ModelEntry(name="old", kind=ModelKind.CHAT, prices=CHAT.prices,
                                            routes=CHAT.routes))
    assert world.catalog.model("old").max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS


def test_an_operator_sets_the_cap_field_and_a_provider_channel_gives_its_own(world):
    admin = admin_for(world)
    model = add_model(admin, {"name": "o1", "channel": "primary", "input_per_1m": "1", "output_per_1m": "2",
                             "cap_field": "max_completion_tokens", "max_output_tokens": 100})
    assert model.cap_field == "max_completion_tokens"
    world.fund("1")
    chat(world, model="o1", max_tokens=50)
    sent = world.sent_json()
    assert sent["max_completion_tokens"] == 50 and "max_tokens" not in sent

    world.catalog_repo.put_channel(Channel("openai", "http://openai.test/v1", "k"))
    world.catalog_repo.put_channel(Channel("glm", "http://glm.test/v1", "k"))
    assert add_model(admin, {"name": "a", "channel": "openai", "output_per_1m": "1"}).cap_field == \
        "max_completion_tokens"
    assert add_model(admin, {"name": "b", "channel": "glm", "output_per_1m": "1"}).cap_field == "max_tokens"
    # An update keeps what it does not name.
    assert add_model(admin, {"name": "o1", "channel": "primary", "input_per_1m": "3"}).cap_field == \
        "max_completion_tokens"


def test_an_operator_lets_a_model_pass_price_changing_fields_through(world):
    admin = admin_for(world)
    add_model(admin, {"name": "tiered", "channel": "primary", "input_per_1m": "1", "output_per_1m": "2",
                     "pass_through": ["service_tier"]})
    world.fund("1")
    chat(world, model="tiered", service_tier="flex")
    assert world.sent_json()["service_tier"] == "flex"
    with pytest.raises(InvalidRequest) as caught:
        chat(world, model="tiered", reasoning_effort="high")
    assert caught.value.param == "reasoning_effort"
    # Only fields the gateway knows change prices may be listed.
    with pytest.raises(InvalidRequest) as caught:
        add_model(admin, {"name": "tiered", "channel": "primary", "pass_through": ["temperature"]})
    assert caught.value.param == "pass_through"
    assert add_model(admin, {"name": "tiered", "channel": "primary", "pass_through": []}).pass_through == ()


def test_an_operator_prices_images_by_quality_and_size(world):
    admin = admin_for(world)
    model = add_model(admin, {"name": "pics", "channel": "primary", "per_image": "0.02", "image_prices": [
        {"quality": "hd", "size": "1024x1024", "per_image": "0.05"},
        {"quality": "standard", "size": "1024x1024", "per_image": "0.03"}]})
    assert model.kind is ModelKind.IMAGE
    assert model.prices.image_price(None, None) == usd_to_units("0.03")  # the default size and quality
    assert model.prices.image_price("hd", None) == usd_to_units("0.05")
    assert model.prices.image_price("hd", "512x512") is None
    # dall-e-3 keeps its built-in sizes when an operator routes it through another channel.
    dalle = add_model(admin, {"name": "dall-e-3", "channel": "primary", "per_image": "0.05"})
    assert dalle.prices.image_price("hd", "1792x1024") == usd_to_units("0.12")
    assert dalle.prices.image_price(None, None) == usd_to_units("0.05")


def test_dall_e_3_has_its_list_prices_by_quality_and_size():
    prices = BUILTIN_MODELS["dall-e-3"].prices
    expected = {("standard", "1024x1024"): "0.04", ("standard", "1024x1792"): "0.08",
                ("standard", "1792x1024"): "0.08", ("hd", "1024x1024"): "0.08", ("hd", "1024x1792"): "0.12",
                ("hd", "1792x1024"): "0.12"}
    for (quality, size), usd in expected.items():
        assert prices.image_price(quality, size) == usd_to_units(usd)
    assert prices.image_price("hd", "256x256") is None and prices.image_price("low", None) is None


def test_a_new_image_model_needs_its_default_image_price(world):
    with pytest.raises(InvalidRequest) as caught:
        add_model(admin_for(world), {"name": "pics", "channel": "primary", "kind": "image", "image_prices": [
            {"quality": "hd", "size": "1024x1024", "per_image": "0.05"}]})
    assert caught.value.param == "per_image"
