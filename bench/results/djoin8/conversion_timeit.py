import timeit
from weftnet.core.identity import ed25519_public_to_x25519 as f, _P
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
keys=[Ed25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(5000)]
ys=[int.from_bytes(k,'little')&((1<<255)-1) for k in keys]
g=f.__wrapped__
a=X25519PrivateKey.generate(); b=X25519PrivateKey.generate().public_key()
for r in range(3):
    print('conv us', min(timeit.repeat(lambda: [g(k) for k in keys], number=1, repeat=3))/5000*1e6,
      'inv us', min(timeit.repeat(lambda: [pow(1-y,-1,_P) for y in ys], number=1, repeat=3))/5000*1e6,
      'x25519 us', min(timeit.repeat(lambda: a.exchange(b), number=5000, repeat=3))/5000*1e6,
      'pubload+x25519', min(timeit.repeat(lambda: a.exchange(X25519PublicKey.from_public_bytes(keys[0])), number=5000, repeat=3))/5000*1e6)
print('pow(p-2) us', min(timeit.repeat(lambda: [pow(1-y,_P-2,_P) for y in ys[:500]], number=1, repeat=3))/500*1e6)
