# kvmhub tiny appliance: flattens a block-style YAML document (a NoCloud network-config) into
# PATH=VALUE lines, one per scalar: mapping keys and list indexes joined by "/", e.g.
#   ethernets/eth0/addresses/0=10.77.0.50/24
#   ethernets/eth0/routes/0/via=10.77.0.1
# Handles block mappings and lists (items indented or at their key's column), quoted scalars,
# flow lists of scalars ([a, b]) and flat flow mappings ({k: v}); block scalars (| >) are skipped.

function indent_of(s) {
	match(s, /^ */)
	return RLENGTH
}

function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	return s
}

function unq(s) {
	s = trim(s)
	if (s ~ /^".*"$/) return substr(s, 2, length(s) - 2)
	if (s ~ /^'.*'$/) {
		s = substr(s, 2, length(s) - 2)
		gsub(/''/, "'", s)
		return s
	}
	sub(/[ \t]+#.*$/, "", s)
	return s
}

function join(p, k) {
	return p == "" ? k : p "/" k
}

# Position of the ": " (or final ":") ending a mapping key, 0 when s is not "key: value".
function key_end(s,    i) {
	if (s ~ /^["']/ && s !~ /^("[^"]*"|'[^']*'):( |$)/) return 0
	if (s ~ /^("[^"]*"|'[^']*'):( |$)/) {
		match(s, /^("[^"]*"|'[^']*'):/)
		return RLENGTH
	}
	i = index(s, ": ")
	if (i > 0 && substr(s, 1, 1) != "[" && substr(s, 1, 1) != "{") return i
	if (s ~ /^[^ \[{][^ ]*:$/) return length(s)
	return 0
}

function scalar(path, v,    parts, n, i, kv) {
	v = trim(v)
	if (v ~ /^\[.*\]$/) {
		v = substr(v, 2, length(v) - 2)
		if (trim(v) == "") return
		n = split(v, parts, ",")
		for (i = 1; i <= n; i++) print join(path, i - 1) "=" unq(parts[i])
	} else if (v ~ /^\{.*\}$/) {
		v = substr(v, 2, length(v) - 2)
		if (trim(v) == "") return
		n = split(v, parts, ",")
		for (i = 1; i <= n; i++) {
			kv = trim(parts[i])
			if (index(kv, ":") == 0) continue
			print join(path, unq(substr(kv, 1, index(kv, ":") - 1))) "=" unq(substr(kv, index(kv, ":") + 1))
		}
	} else if (v ~ /^[|>][-+0-9]*$/) {
		skipping = 1
	} else if (v != "~" && v != "null") {
		print path "=" unq(v)
	}
}

# "key: value" whose key sits at column col, inside the container at depth level.
function pair(s, level, col,    e, k, v, p) {
	e = key_end(s)
	k = unq(substr(s, 1, e - 1))
	v = trim(substr(s, e + 1))
	p = join(spath[level], k)
	if (v == "") {
		pend = p
		pind = col
	} else {
		skipind = col
		scalar(p, v)
	}
}

BEGIN {
	d = 0
	sind[0] = 0
	spath[0] = ""
	sseq[0] = 0
	pend = ""
	skipping = 0
}

{
	sub(/\r$/, "")
	line = $0
	ind = indent_of(line)
	if (skipping) {
		if (line ~ /^[ \t]*$/ || ind > skipind) next
		skipping = 0
	}
	if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)/) next
	c = substr(line, ind + 1)
	isitem = (c ~ /^-( |$)/)
	if (pend != "") {
		if (ind > pind || (ind == pind && isitem)) {
			d++
			sind[d] = ind
			spath[d] = pend
			sseq[d] = isitem
			scnt[d] = 0
		}
		pend = ""
	}
	while (d > 0 && ind < sind[d]) d--
	if (d > 0 && sseq[d] && ind == sind[d] && !isitem) d--

	if (isitem) {
		if (!sseq[d]) next
		ipath = join(spath[d], scnt[d]++)
		r = substr(c, 2)
		col = ind + 1 + indent_of(r)
		r = trim(r)
		if (r == "") {
			pend = ipath
			pind = ind
		} else if (key_end(r) > 0) {
			d++
			sind[d] = col
			spath[d] = ipath
			sseq[d] = 0
			pair(r, d, col)
		} else {
			skipind = ind
			scalar(ipath, r)
		}
		next
	}
	if (key_end(c) > 0) pair(c, d, ind)
}
