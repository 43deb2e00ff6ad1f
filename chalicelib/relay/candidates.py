"""Which models a request may use, checked before anything is held: the one it names, or for a
chat the several it names (`models`) or its model's operator-set fallbacks."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.catalog.catalog import Catalog, ResolvedRoute
from chalicelib.core.domain import ApiKey, Group, ModelEntry, ModelKind
from chalicelib.core.errors import GatewayError, InvalidRequest, NotFound, PermissionDenied
from chalicelib.keys.auth import check_allowed
from chalicelib.keys.plans import KeyPlans
from chalicelib.providers.port import Operation
from chalicelib.relay.schemas import MAX_MODELS, ChatRequest

# The kind of model each operation needs.
_KINDS = {Operation.CHAT: ModelKind.CHAT, Operation.EMBEDDINGS: ModelKind.EMBEDDING,
          Operation.IMAGES: ModelKind.IMAGE}


@dataclass(frozen=True)
class Checked:
    """A model a request may use: allowed for its key and plan, of the right kind, routable now."""

    model: ModelEntry
    routes: list[ResolvedRoute]
    group: Group


class ModelChecker:
    def __init__(self, catalog: Catalog, plans: KeyPlans) -> None:
        self._catalog = catalog
        self._plans = plans

    def check(self, name: str, endpoint: Operation, key: ApiKey, client_ip: str | None, *,
              param: str = "model") -> Checked:
        """A model checked against the catalog, the key and its plan; an error naming `param` if refused."""
        try:
            model = self._catalog.model(name)
            if model.kind is not _KINDS[endpoint]:
                raise InvalidRequest(f"The model `{model.name}` is a {model.kind.value} model and cannot serve "
                                     f"{endpoint}.", param="model", code="model_not_supported")
            routes = self._catalog.routes(model)  # ModelNotFound before anything is held
            # 403 once the plan is gone; one taken from the account is refused by the hold.
            group = self._plans.of_key(key)
            if not group.allows(model.name):
                raise PermissionDenied(f"The plan `{group.name}` does not include the model `{model.name}`.",
                                       param="model", code="model_not_allowed")
            check_allowed(key, model=model.name, client_ip=client_ip)
        except GatewayError as exc:
            if exc.param == "model":
                exc.param = param
            raise
        return Checked(model, routes, group)

    def chat_candidates(self, key: ApiKey, request: ChatRequest, client_ip: str | None) -> list[Checked]:
        """The models a chat tries in order: those the request names, every one checked now (an error
        naming `models` for the first refused); else its model and that model's fallbacks, leaving out
        any the key may not use or that is not routable now (the operator's choice, not the client's)."""
        if request.models:
            return [self.check(name, Operation.CHAT, key, client_ip, param="models") for name in request.model_names]
        first = self.check(request.model_names[0], Operation.CHAT, key, client_ip)
        candidates = [first]
        for name in first.model.fallbacks:
            try:
                candidates.append(self.check(name, Operation.CHAT, key, client_ip))
            except (InvalidRequest, PermissionDenied, NotFound):
                continue
        return candidates[:MAX_MODELS]
