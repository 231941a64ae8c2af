"""stackcue BLE sensor: ESP32 + MPU-6050 in MicroPython (aioble), reference implementation.

Speaks the profile in docs/ble_profile.md. Copy to the board as main.py (with aioble installed:
``mpremote mip install aioble``). The packet functions at the top are pure and import nothing from
MicroPython, so CPython tests check them byte for byte against firmware_bridge/ble_profile.py.
"""

import struct

try:  # MicroPython only: the pure functions below stay importable on CPython
    import asyncio
    import random
    import time

    import aioble
    import bluetooth
    import machine

    _ON_DEVICE = True
except ImportError:
    _ON_DEVICE = False

SERVICE_UUID = "d08c0001-f4a4-4e53-b237-6ce85239c84a"
DATA_UUID = "d08c0002-f4a4-4e53-b237-6ce85239c84a"
CONTROL_UUID = "d08c0003-f4a4-4e53-b237-6ce85239c84a"
INFO_UUID = "d08c0004-f4a4-4e53-b237-6ce85239c84a"

VERSION = 1
FLAG_RESTART = 0x01
FLAG_OVERFLOW = 0x02
FLAG_COMPACT = 0x80
HEADER_LEN = 14
COMPACT_HEADER_LEN = 7
SAMPLE_BYTES = 12
CRC_BYTES = 2
MAX_SAMPLES = 19
IMU_KIND_MPU6050 = 1
FIRMWARE = (1, 0)

OP_GET_CONFIG = 0x01
OP_SET_RATE = 0x02
OP_SET_RANGES = 0x03
OP_START = 0x04
OP_STOP = 0x05
STATUS_OK = 0
STATUS_UNKNOWN_OP = 1
STATUS_BAD_LENGTH = 2
STATUS_BAD_VALUE = 3


# --- pure packet functions (no MicroPython imports) --------------------------------------------------


def fifo_to_le(fifo):
    """MPU-6050 FIFO frames (accel xyz, gyro xyz, big-endian int16) -> the profile's little-endian samples."""
    out = bytearray(len(fifo))
    for i in range(0, len(fifo) - 1, 2):  # MicroPython has no extended-slice assignment
        out[i] = fifo[i + 1]
        out[i + 1] = fifo[i]
    return bytes(out)


def crc16(data):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), bit by bit: small, and fast enough for 10 batches/s."""
    c = 0xFFFF
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


def crc8(data):
    """CRC-8/SMBUS (poly 0x07, init 0)."""
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def encode_batch(counter, samples_le, rate_mhz, ranges, boot_id, flags=0, compact=False):
    """One data notification: ``samples_le`` is N × 12 bytes of little-endian int16 (ax..gz), then its CRC."""
    n = len(samples_le) // SAMPLE_BYTES
    counter &= 0xFFFFFFFF
    if compact:  # exactly one sample
        out = struct.pack("<BBBI", VERSION, flags | FLAG_COMPACT, ranges, counter) + bytes(samples_le)
        return out + bytes([crc8(out)])
    out = struct.pack("<BBBBIIH", VERSION, flags, n, ranges, counter, rate_mhz, boot_id) + bytes(samples_le)
    return out + struct.pack("<H", crc16(out))


def encode_reply(op, seq, status, ranges, rate_mhz, boot_id, next_counter):
    return struct.pack("<BBBBIHI", op | 0x80, seq & 0xFF, status, ranges, rate_mhz, boot_id, next_counter & 0xFFFFFFFF)


def encode_info(ranges, max_batch, rate_mhz, boot_id):
    return struct.pack("<BBBBIHBB", VERSION, IMU_KIND_MPU6050, ranges, max_batch, rate_mhz, boot_id, *FIRMWARE)


def batch_size(att_mtu):
    """(samples per notification, compact) for a negotiated ATT MTU."""
    n = min(MAX_SAMPLES, (att_mtu - 3 - HEADER_LEN - CRC_BYTES) // SAMPLE_BYTES)
    return (n, False) if n >= 1 else (1, True)


def rate_divider(rate_mhz):
    """SMPLRT_DIV nearest to a requested rate (1000/(1+d) Hz with the low-pass on, 50..1000 Hz), or None."""
    if rate_mhz < 45_000 or rate_mhz > 1_050_000:
        return None
    d = round(1_000_000 / rate_mhz) - 1
    return max(0, min(19, d))


def divider_rate_mhz(d):
    return 1_000_000 // (1 + d)  # exact for the divisors of 1000; else truncated to the mHz


# --- the device ---------------------------------------------------------------------------------------

MPU_ADDR = 0x68
R_SMPLRT_DIV, R_CONFIG, R_GYRO_CONFIG, R_ACCEL_CONFIG = 0x19, 0x1A, 0x1B, 0x1C
R_FIFO_EN, R_INT_ENABLE, R_INT_STATUS, R_USER_CTRL, R_PWR_MGMT_1 = 0x23, 0x38, 0x3A, 0x6A, 0x6B
R_FIFO_COUNT_H, R_FIFO_R_W, R_WHO_AM_I = 0x72, 0x74, 0x75
FIFO_SIZE = 1024


class Sensor:
    """MPU-6050 FIFO reader with a sample counter that also counts the samples an overflow lost."""

    def __init__(self, i2c, addr=MPU_ADDR):
        self.i2c, self.addr = i2c, addr
        self.div, self.acc_code, self.gyr_code = 4, 2, 2  # 200 Hz, ±8 g, ±1000 °/s
        self.counter = 0  # counter of the first sample not yet sent
        self.flags = FLAG_RESTART
        self.t_read = 0
        self.generation = 0  # bumped by every (re)configuration: samples read before belong to the old one

    def _w(self, reg, val):
        self.i2c.writeto_mem(self.addr, reg, bytes((val,)))

    def _r(self, reg, n):
        return self.i2c.readfrom_mem(self.addr, reg, n)

    @property
    def rate_mhz(self):
        return divider_rate_mhz(self.div)

    @property
    def ranges(self):
        return self.acc_code | (self.gyr_code << 4)

    def configure(self):
        """(Re)start: configuration, FIFO on, counter back to 0 with the RESTART flag."""
        self._w(R_PWR_MGMT_1, 0x80)
        time.sleep_ms(100)
        self._w(R_PWR_MGMT_1, 0x01)  # PLL on the X gyro
        rate_hz = 1000 // (1 + self.div)
        dlpf = 6  # the widest low-pass under a quarter of the rate (MicroPython's next() may lack a default)
        for c, bw in ((5, 10), (4, 21), (3, 44), (2, 94), (1, 184)):
            if bw <= rate_hz // 4:
                dlpf = c
        self._w(R_CONFIG, dlpf)
        self._w(R_SMPLRT_DIV, self.div)
        self._w(R_GYRO_CONFIG, self.gyr_code << 3)
        self._w(R_ACCEL_CONFIG, self.acc_code << 3)
        self._w(R_INT_ENABLE, 0x10)
        self._w(R_USER_CTRL, 0x04)  # FIFO reset
        self._w(R_USER_CTRL, 0x40)  # FIFO on
        self._w(R_FIFO_EN, 0x78)  # accel + gyro xyz: 12-byte frames
        self.counter, self.flags, self.t_read = 0, FLAG_RESTART, time.ticks_us()
        self.generation += 1

    def read(self, max_frames):
        """(little-endian samples, lost): up to ``max_frames`` samples, or after an overflow none and the
        number of samples the sensor made since the last read (estimated from the clock; the FIFO is reset)."""
        now = time.ticks_us()
        if self._r(R_INT_STATUS, 1)[0] & 0x10:
            lost = time.ticks_diff(now, self.t_read) * self.rate_mhz // 1_000_000_000
            self._w(R_USER_CTRL, 0x44)  # reset the FIFO (misaligned after an overflow), keep it on
            self.t_read = now
            return b"", max(lost, 1)
        hi, lo = self._r(R_FIFO_COUNT_H, 2)
        frames = min(((hi << 8) | lo) // SAMPLE_BYTES, max_frames)
        self.t_read = now
        if not frames:
            return b"", 0
        return fifo_to_le(self._r(R_FIFO_R_W, frames * SAMPLE_BYTES)), 0


async def main():
    boot_id = random.getrandbits(16)
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400_000)
    sensor = Sensor(i2c)
    if sensor._r(R_WHO_AM_I, 1)[0] not in (0x68, 0x72, 0x70, 0x98):
        print("stackcue: no MPU-6050 at 0x68")
    sensor.configure()
    aioble.config(mtu=247)
    service = aioble.Service(bluetooth.UUID(SERVICE_UUID))
    data = aioble.Characteristic(service, bluetooth.UUID(DATA_UUID), notify=True)
    control = aioble.Characteristic(
        service, bluetooth.UUID(CONTROL_UUID), read=True, write=True, notify=True, capture=True
    )
    info = aioble.Characteristic(service, bluetooth.UUID(INFO_UUID), read=True)
    aioble.register_services(service)
    state = {"streaming": True}

    def publish_info():
        info.write(encode_info(sensor.ranges, MAX_SAMPLES, sensor.rate_mhz, boot_id))

    publish_info()

    async def handle_control():
        while True:
            conn, req = await control.written()
            op, seq = (req[0], req[1]) if len(req) >= 2 else (0, 0)
            status = STATUS_OK
            want = {OP_GET_CONFIG: 2, OP_SET_RATE: 6, OP_SET_RANGES: 3, OP_START: 2, OP_STOP: 2}.get(op)
            if want is None:
                status = STATUS_UNKNOWN_OP
            elif len(req) != want:
                status = STATUS_BAD_LENGTH
            elif op == OP_SET_RATE:
                d = rate_divider(int.from_bytes(req[2:6], "little"))
                if d is None:
                    status = STATUS_BAD_VALUE
                else:
                    sensor.div = d
                    sensor.configure()
            elif op == OP_SET_RANGES:
                a, g = req[2] & 0x0F, req[2] >> 4
                if a > 3 or g > 3:
                    status = STATUS_BAD_VALUE
                else:
                    sensor.acc_code, sensor.gyr_code = a, g
                    sensor.configure()
            elif op in (OP_START, OP_STOP):
                state["streaming"] = op == OP_START
                sensor.configure()
            publish_info()
            reply = encode_reply(op, seq, status, sensor.ranges, sensor.rate_mhz, boot_id, sensor.counter)
            control.write(reply)
            control.notify(conn, reply)

    state["control_task"] = asyncio.create_task(handle_control())  # a reference keeps it alive
    while True:
        conn = await aioble.advertise(50_000, name="stackcue", services=[bluetooth.UUID(SERVICE_UUID)])
        try:
            await conn.exchange_mtu(247)
        except Exception:
            pass  # stays at 23: compact batches
        n, compact = batch_size(getattr(conn, "mtu", None) or 23)
        sensor.configure()  # a new connection starts a new segment
        pending, generation = b"", sensor.generation
        while conn.is_connected():
            if generation != sensor.generation:  # reconfigured by a control write: drop the old samples
                pending, generation = b"", sensor.generation
            if state["streaming"]:
                got, lost = sensor.read(2 * n)
                if lost:  # the FIFO overflowed: what is pending and what the FIFO held are gone; count them
                    sensor.counter = (sensor.counter + len(pending) // SAMPLE_BYTES + lost) & 0xFFFFFFFF
                    sensor.flags |= FLAG_OVERFLOW
                    pending = b""
                pending += got
                while len(pending) >= n * SAMPLE_BYTES:
                    chunk, pending = pending[: n * SAMPLE_BYTES], pending[n * SAMPLE_BYTES :]
                    pkt = encode_batch(
                        sensor.counter, chunk, sensor.rate_mhz, sensor.ranges, boot_id, sensor.flags, compact
                    )
                    try:
                        data.notify(conn, pkt)
                    except Exception:
                        pass  # TX queue full: the batch is lost, the counter still advances (a gap)
                    sensor.counter = (sensor.counter + n) & 0xFFFFFFFF
                    sensor.flags = 0
            await asyncio.sleep_ms(5)


if _ON_DEVICE and __name__ == "__main__":
    asyncio.run(main())
