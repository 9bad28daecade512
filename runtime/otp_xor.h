/* The one-time-pad XOR shared by the relay hops and the encryptor. */
#ifndef RUNTIME_OTP_XOR_H
#define RUNTIME_OTP_XOR_H

#include <stddef.h>

/* out = a XOR b over n bytes, a machine word at a time (the buffers may be
 * unaligned; out may be a or b). */
void otp_xor(unsigned char *out, const unsigned char *a, const unsigned char *b, size_t n);

#endif
