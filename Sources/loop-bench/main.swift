import Compat
print("loop-bench: backends \(LoopBackendKind.allCases)")
