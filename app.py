from chalice import Chalice

from chalicelib.api.admin_routes import admin_routes
from chalicelib.api.relay_routes import relay_routes
from chalicelib.api.maintenance import maintenance

app = Chalice(app_name="tokenway")
app.register_blueprint(relay_routes)
app.register_blueprint(admin_routes)
app.register_blueprint(maintenance)
