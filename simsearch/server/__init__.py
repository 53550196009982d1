"""The simsearch gRPC server: ``simsearch.v1.SimSearch`` over :class:`simsearch.Index`.

``create_server(config) -> (server, port)`` builds a bound server without starting it;
``serve(config)`` runs one until SIGTERM/SIGINT. ``simsearch serve`` is the command line.
"""

from ._app import SimsearchServer, create_server, serve
from ._config import ServerConfig, read_token_file

__all__ = ["ServerConfig", "SimsearchServer", "create_server", "read_token_file", "serve"]
