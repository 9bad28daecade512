/* qkd-sim --device: the two ends of a simulated QKD link served as ETSI GS
 * QKD 014 devices (qkd-sim/device.c). */
#ifndef QKD_SIM_DEVICE_H
#define QKD_SIM_DEVICE_H

/* Runs the device mode with qkd-sim's command line; returns the exit status. */
int device_main(int argc, char **argv);

#endif
