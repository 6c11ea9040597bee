import Glibc

/// Replaces a file's content all at once: a reader (or a crash) sees the old
/// content or the new, never a truncated mix. The bytes go to a new file in the
/// target's directory (created exclusively, mode 0600, never through a symlink),
/// are synced, and the file is renamed over the target; then the directory is
/// synced so the rename itself survives a crash. A symlink or a directory at the
/// target is refused rather than followed or replaced. On any failure the new
/// file is removed and the target is left as it was.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String) throws(SaveError) {
        guard !path.isEmpty, !path.hasSuffix("/") else { throw .isDirectory(path) }
        var status = stat()
        if lstat(path, &status) == 0 {
            switch status.st_mode & S_IFMT {
            case S_IFLNK: throw .isSymlink(path)
            case S_IFDIR: throw .isDirectory(path)
            default: break
            }
        } else if errno != ENOENT {
            throw .system(path, "lstat", errno)
        }
        let directory = directoryName(of: path)
        let (fd, temporary) = try createTemporary(besides: path)
        do throws(SaveError) {
            try writeAll(bytes, to: fd, path: path)
            guard fsync(fd) == 0 else { throw .system(path, "fsync", errno) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        // close() reports write-back errors of some file systems; EINTR must not be retried on Linux.
        guard close(fd) == 0 || errno == EINTR else {
            let code = errno
            unlink(temporary)
            throw .system(path, "close", code)
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .system(path, "rename", code)
        }
        try syncDirectory(directory, for: path)
    }

    /// `dir/.name.tmp-PID-N` in the target's directory (so `rename` stays within one
    /// file system), made with O_EXCL: an existing file of that name is never reused.
    private static func createTemporary(besides path: String) throws(SaveError) -> (Int32, String) {
        let directory = directoryName(of: path)
        let base = path.split(separator: "/").last.map(String.init) ?? path
        for attempt in 0..<16 {
            let name = "\(directory)/.\(base).tmp-\(getpid())-\(attempt)"
            let fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 { return (fd, name) }
            if errno == EINTR || errno == EEXIST { continue }
            throw .system(path, "open(temporary)", errno)
        }
        throw .system(path, "open(temporary)", EEXIST)
    }

    /// Short writes continue where they stopped; EINTR is retried.
    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws(SaveError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .system(path, "write", errno)
            }
            offset += written
        }
    }

    private static func syncDirectory(_ directory: String, for path: String) throws(SaveError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(path, "open(directory)", errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .system(path, "fsync(directory)", errno) }
    }

    private static func directoryName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Why a save failed; `errno` is what the requester's error reply carries.
public enum SaveError: Error, Equatable, CustomStringConvertible {
    /// The target is a symbolic link: refused, not followed.
    case isSymlink(String)
    case isDirectory(String)
    /// The path, the call that failed and its errno.
    case system(String, String, Int32)

    public var path: String {
        switch self {
        case .isSymlink(let path), .isDirectory(let path), .system(let path, _, _): return path
        }
    }

    public var errno: Int32 {
        switch self {
        case .isSymlink: return ELOOP
        case .isDirectory: return EISDIR
        case .system(_, _, let code): return code
        }
    }

    /// `save failed: PATH: reason`.
    public var description: String { "save failed: \(path): \(reason)" }

    public var reason: String {
        switch self {
        case .isSymlink: return "is a symbolic link (refused: it would be followed)"
        case .isDirectory: return "is a directory"
        case .system(_, let call, let code): return "\(call): \(String(cString: strerror(code)))"
        }
    }
}
