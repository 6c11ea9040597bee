import Compat
print(LoopBackendKind.buildDefault)
