import Glibc
import LoopCore

/// Which file a descriptor names: device, inode and access mode. The epoll set
/// compares it to tell a number closed, or reused for another file, from the
/// file it watches.
struct FileIdentity: Equatable {
    let device: UInt
    let inode: UInt
    /// O_RDONLY, O_WRONLY or O_RDWR: a pipe's two ends share one inode and differ here.
    let accessMode: Int32

    init(of fd: Int32) throws(SystemError) {
        var info = stat()
        _ = try systemCall("fstat(\(fd))") { fstat(fd, &info) }
        let flags = try systemCall("fcntl(\(fd), F_GETFL)") { fcntl(fd, F_GETFL) }
        device = UInt(info.st_dev)
        inode = UInt(info.st_ino)
        accessMode = flags & O_ACCMODE
    }

    /// The file `fd` names now, or nil when it names none.
    static func current(of fd: Int32) -> FileIdentity? {
        do {
            return try FileIdentity(of: fd)
        } catch {
            // Not an error to report: on a valid buffer both calls fail only with
            // EBADF, and "closed" is the answer the callers ask for.
            return nil
        }
    }
}
