import tarfile, io, struct, os
tarfile.RECORDSIZE = 512
def tar(entries):
    b=io.BytesIO()
    with tarfile.open(fileobj=b, mode='w', format=tarfile.GNU_FORMAT) as t:
        for name, typ, mode, extra in entries:
            ti=tarfile.TarInfo(name); ti.type=typ; ti.mode=mode; ti.mtime=1600000000
            data=None
            if typ==tarfile.REGTYPE:
                data=extra or b''; ti.size=len(data)
            elif typ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname=extra
            elif typ==tarfile.CHRTYPE:
                ti.devmajor,ti.devminor=1,3
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()
R,D,S,L,F,C=tarfile.REGTYPE,tarfile.DIRTYPE,tarfile.SYMTYPE,tarfile.LNKTYPE,tarfile.FIFOTYPE,tarfile.CHRTYPE
for target in ['export_tree','apply_layer']:
    can=f'/tmp/rbuild-fuzz/{target}/canary'
    seeds={
     'whiteouts':[('f',R,0o644,b'x'),('sub',D,0o755,None),('sub/.wh..wh..opq',R,0o644,b''),('.wh.f',R,0o644,b'')],
     'dirlink':[('a',D,0o4755,None),('a',S,0o777,can+'/file'),('a/f',R,0o4755,b's')],
     'linkwrite':[('d',S,0o777,can+'/dir'),('d/x',R,0o644,b'x'),('e',S,0o777,'/etc'),('etc',D,0o755,None),('e/y',R,0o644,b'y')],
     'hardlinks':[('bin',D,0o755,None),('bin/a',R,0o755,b'p'),('bin/b',L,0o755,'bin/a'),('c',L,0o755,'/bin/a')],
     'special':[('p',F,0o644,None),('dev',D,0o755,None),('dev/null',C,0o666,None)],
     'absolute':[(can+'/file',R,0o600,b'abs'),('notes',D,0o755,None),('notes/keep.txt',R,0o600,b'img')],
    }
    pre = struct.pack('<H',0xffff) if target=='export_tree' else b'\x00'
    for name, ents in seeds.items():
        open(f'seeds/{target}/{name}','wb').write(pre+tar(ents))
    if target=='export_tree':
        l1=tar([('a',D,0o755,None),('notes',D,0o755,None),('notes/img',R,0o644,b'i')])
        l2=tar([('a',S,0o777,can+'/dir'),('a/f',R,0o4755,b's'),('.wh.notes',R,0o644,b''),('.wh...',R,0o644,b'')])
        open(f'seeds/{target}/two-layers','wb').write(struct.pack('<H',len(l1))+l1+l2)
    else:
        open(f'seeds/{target}/overlay-whiteouts','wb').write(b'\x01'+tar(seeds['whiteouts']))
