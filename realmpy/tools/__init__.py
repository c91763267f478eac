"""Tools above every layer: they may use the client and the server together
(``demo`` runs an embedded server and synced processes).  Nothing in the
library imports them."""
