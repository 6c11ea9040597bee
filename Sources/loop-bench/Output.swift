import Glibc

/// Prints a line and flushes at once: the parent reads it through a pipe.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Progress for the person running the benchmark, on stderr.
func progress(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
