package dtlstransport

import "errors"

// CheckFiles opens and parses every file c names, exactly as Listen does:
// the PSK file (every line), the certificate and its key (which must
// match and be ECDSA) and the client CA bundle. It binds nothing, so a
// configuration can be checked while a gateway runs. The errors name the
// configuration keys; all of them are returned, joined.
func (c Config) CheckFiles() error {
	var errs []error
	if c.PSKFile != "" {
		if _, err := readPSKFile(c.PSKFile); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CertFile != "" && c.KeyFile != "" {
		if _, err := loadCertificate(c.CertFile, c.KeyFile); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ClientCAFile != "" {
		if _, err := loadCAs(c.ClientCAFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
