// Users of the server get the loop API (`Loop`, `LoopBackendKind`, …) with it.
@_exported import Compat
