import sys
sys.path.insert(0,'tests')
import test_hostile_records as T, hostile_tools as H
from unittest import mock
cands=lambda named: T.EndpointRecord(T.NAT_PUBLIC, 1, tuple(T.Candidate(T.CAND_REFLEXIVE, x) for x in named), ())
rels=lambda named: T.EndpointRecord(T.NAT_EIM, 2, (), tuple(T.RelayRef(T.Identity.generate(T.random.Random(500 + i)).public_key, x) for i, x in enumerate(named[:4])))
orig=H.Sink.receive_datagram
for name,r in (("candidates",cands),("relays",rels)):
  for nc in (False,True):
    per={}
    def rd(self,data,addr,now,per=per):
        k=id(self); d=per.setdefault(k,[0,0]); d[0]+=1; d[1]+=len(data); return orig(self,data,addr,now)
    with mock.patch.object(H.Sink,"receive_datagram",rd):
      try: T._attack(r, newcomer=nc)
      except AssertionError: pass
    vals=sorted(per.values(), key=lambda x:-x[1])
    print(name, "newcomer" if nc else "earned", vals)
