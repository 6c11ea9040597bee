// Users of the server get the loop API with it.
@_exported import Compat
