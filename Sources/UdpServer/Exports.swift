import Compat
