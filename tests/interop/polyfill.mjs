// js-libp2p 3.x calls Promise.withResolvers (Node >= 22); this adds it on Node 20.
Promise.withResolvers ??= function () { let resolve, reject; const promise = new this((res, rej) => { resolve = res; reject = rej }); return { promise, resolve, reject } }
