from chalicelib.catalog.catalog import BUILTIN_MODELS, Catalog
from chalicelib.core.domain import Channel
from chalicelib.storage.memory.catalog_repo import InMemoryCatalogRepo

GUIDE = {"deepseek-chat", "deepseek-reasoner", "qwen-plus", "qwen-max", "kimi-k2", "doubao-pro", "glm-4", "gpt-4o",
         "claude-sonnet", "text-embedding-3-small", "dall-e-3"}


def routable(catalog: Catalog) -> set[str]:
    return {model.name for model in catalog.routable_models()}


def test_the_catalog_holds_the_guides_models_with_prices_and_use_cases():
    assert set(BUILTIN_MODELS) == GUIDE
    for model in BUILTIN_MODELS.values():
        assert model.use_case and model.routes
        assert model.prices.input_per_1m or model.prices.per_image


def test_nothing_is_routable_without_a_provider_key_or_channel():
    assert routable(Catalog(InMemoryCatalogRepo(), {}, ttl_s=0)) == set()


def test_a_providers_key_in_the_environment_makes_its_models_routable():
    catalog = Catalog(InMemoryCatalogRepo(), {"deepseek": "sk-upstream", "openai": "sk-openai"}, ttl_s=0)
    assert routable(catalog) == {"deepseek-chat", "deepseek-reasoner", "gpt-4o", "text-embedding-3-small",
                                 "dall-e-3"}
    [route] = catalog.routes(BUILTIN_MODELS["deepseek-chat"])
    assert route.channel.base_url == "https://api.deepseek.com/v1" and route.channel.api_key == "sk-upstream"


def test_a_channel_named_after_a_provider_serves_its_models_and_claude_waits_for_its_adapter():
    repo = InMemoryCatalogRepo()
    repo.put_channel(Channel("qwen", "https://proxy.example.com/v1", "k"))
    catalog = Catalog(repo, {"anthropic": "sk-ant"}, ttl_s=0)
    assert routable(catalog) == {"qwen-plus", "qwen-max"}


def test_the_catalog_is_reread_once_its_lifetime_passes():
    repo = InMemoryCatalogRepo()
    now = [0.0]
    catalog = Catalog(repo, {}, ttl_s=5, clock=lambda: now[0])
    assert routable(catalog) == set()
    repo.put_channel(Channel("glm", "https://open.bigmodel.cn/api/paas/v4", "k"))
    assert routable(catalog) == set()
    now[0] = 5.0
    assert routable(catalog) == {"glm-4"}
