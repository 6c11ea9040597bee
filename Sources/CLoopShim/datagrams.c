// The UDP server's batches: several datagrams in one recvmmsg/sendmmsg call.
#define _GNU_SOURCE
#include "CLoopShim.h"
#include <errno.h>
#include <string.h>

int shim_recv_datagrams(int fd, void *buffers, uint32_t buffer_size, struct sockaddr_in *sources,
                        uint32_t *lengths, unsigned count) {
    if (count == 1) {
        // One datagram: recvfrom costs less than recvmmsg's per-message header copies.
        socklen_t length = sizeof(struct sockaddr_in);
        ssize_t r;
        do {
            r = recvfrom(fd, buffers, buffer_size, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)sources, &length);
        } while (r < 0 && errno == EINTR);
        if (r < 0) return -1;
        lengths[0] = (uint32_t)r;
        return 1;
    }
    struct mmsghdr messages[SHIM_MAX_DATAGRAMS];
    struct iovec vectors[SHIM_MAX_DATAGRAMS];
    if (count > SHIM_MAX_DATAGRAMS) count = SHIM_MAX_DATAGRAMS;
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffers + (size_t)i * buffer_size;
        vectors[i].iov_len = buffer_size;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    int n;
    do {
        n = recvmmsg(fd, messages, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) lengths[i] = messages[i].msg_len;
    return n;
}

int shim_send_datagrams(int fd, const void *const *bases, const uint32_t *lengths,
                        const struct sockaddr_in *destinations, unsigned count) {
    if (count == 1) {
        // One datagram (the common case at low load): sendto, as recvfrom above.
        ssize_t r;
        do {
            r = sendto(fd, bases[0], lengths[0], MSG_DONTWAIT, (const struct sockaddr *)destinations,
                       sizeof(struct sockaddr_in));
        } while (r < 0 && errno == EINTR);
        return r < 0 ? -1 : 1;
    }
    struct mmsghdr messages[SHIM_MAX_DATAGRAMS];
    struct iovec vectors[SHIM_MAX_DATAGRAMS];
    if (count > SHIM_MAX_DATAGRAMS) count = SHIM_MAX_DATAGRAMS;
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (void *)bases[i];
        vectors[i].iov_len = lengths[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = (void *)&destinations[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    int n;
    do {
        n = sendmmsg(fd, messages, count, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n;
}
