from chalice import Chalice

from chalicelib.api.admin_payment_routes import admin_payment_routes
from chalicelib.api.admin_routes import admin_routes
from chalicelib.api.auth_routes import auth_routes
from chalicelib.api.maintenance import maintenance
from chalicelib.api.messages_routes import messages_routes
from chalicelib.api.openapi import openapi_routes
from chalicelib.api.relay_routes import relay_routes
from chalicelib.api.routing import cover_every_route
from chalicelib.api.token_routes import token_routes
from chalicelib.api.usage_routes import usage_routes
from chalicelib.api.wallet_routes import wallet_routes
from chalicelib.api.web_routes import web_routes

app = Chalice(app_name="tokenway")
app.register_blueprint(relay_routes)
app.register_blueprint(messages_routes)
app.register_blueprint(auth_routes)
app.register_blueprint(token_routes)
app.register_blueprint(openapi_routes)
app.register_blueprint(admin_routes)
app.register_blueprint(wallet_routes)
app.register_blueprint(admin_payment_routes)
app.register_blueprint(usage_routes)
app.register_blueprint(maintenance)
# The web console: its page at `/`, its files under `/assets/`.
app.register_blueprint(web_routes)
# Last: every path and method the blueprints leave unserved gets the gateway's own 404 or 405.
cover_every_route(app)
