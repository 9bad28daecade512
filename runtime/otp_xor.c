/* The one-time-pad XOR (otp_xor.h). */
#include "runtime/otp_xor.h"

#include <stdint.h>
#include <string.h>

void otp_xor(unsigned char *out, const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        x ^= y;
        memcpy(out + i, &x, 8);
    }
    for (; i < n; i++)
        out[i] = a[i] ^ b[i];
}
