package main

import (
	"flag"
	"fmt"
	"regexp"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/awsapi"
	"github.com/hsmkms/hsmkms/service"
)

// The AWS KMS protocol's settings (docs/aws-compat.md).

var (
	awsRegionPattern  = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)
	awsAccountPattern = regexp.MustCompile(`^[0-9]{12}$`)
)

func awsFlags(fs *flag.FlagSet, env func(name, def string) string, c *Config) {
	fs.StringVar(&c.AWSRegion, "aws-region", env("KMS_AWS_REGION", awsapi.DefaultRegion),
		"region of the AWS KMS protocol: in ARNs and in every signature's scope (KMS_AWS_REGION)")
	fs.StringVar(&c.AWSAccount, "aws-account-id", env("KMS_AWS_ACCOUNT_ID", awsapi.DefaultAccount),
		"12-digit account id in the AWS KMS protocol's ARNs (KMS_AWS_ACCOUNT_ID)")
}

func (c *Config) validateAWS() error {
	if !awsRegionPattern.MatchString(c.AWSRegion) {
		return fmt.Errorf("aws-region: %q is not a region name such as %s", c.AWSRegion, awsapi.DefaultRegion)
	}
	if !awsAccountPattern.MatchString(c.AWSAccount) {
		return fmt.Errorf("aws-account-id: %q is not 12 digits", c.AWSAccount)
	}
	return nil
}

func awsProtocol(cfg *Config, svc *service.Service) api.Protocol {
	return awsapi.New(awsapi.Config{Service: awsapi.Parts(svc), Region: cfg.AWSRegion, Account: cfg.AWSAccount})
}
